/* Cross-checks the native core on another architecture (run under qemu by
 * tests/test_native_cross.py): CRC-32C check values, hardware vs portable per-block CRCs, and
 * a vote with one outvoted replica. Exit status 0 means every check passed. */
#include <stdio.h>
#include <string.h>

#include "flight_native.h"

int main(void)
{
    int failures = 0;
    const uint8_t *check = (const uint8_t *)"123456789";
    if (flight_crc32c_sw(0, check, 9) != 0xE3069283u) failures++;
    int kind = flight_crc32c_hw_kind();
    if (kind && flight_crc32c_hw(0, check, 9) != 0xE3069283u) failures++;

    static uint8_t big[3 * 4096 + 100];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (uint8_t)(i * 31 + 7);
    uint32_t hw[4], sw[4];
    flight_crc32c_blocks_sw(big + 1, sizeof big - 1, 4096, sw);
    if (kind) {
        flight_crc32c_blocks_hw(big + 1, sizeof big - 1, 4096, hw);
        if (memcmp(hw, sw, sizeof hw) != 0) failures++;
    }
    for (int i = 0; i < 4; i++) {
        size_t len = i < 3 ? 4096 : sizeof big - 1 - 3 * 4096;
        if (sw[i] != flight_crc32c_sw(0, big + 1 + 4096 * (size_t)i, len)) failures++;
    }

    uint8_t a[19], c[19], out[19];
    memcpy(a, "abcdefghijklmnopqrs", 19);
    memcpy(c, a, 19);
    c[17] ^= 1;
    flight_vote_stats st;
    int64_t corrected = flight_vote(a, a, c, out, 19, &st);
    if (corrected != 1 || memcmp(out, a, 19) != 0 || st.lost[2] != 1 || st.lost[0] || st.corrected != 1) failures++;

    printf("hw_kind=%d failures=%d\n", kind, failures);
    return failures != 0;
}
