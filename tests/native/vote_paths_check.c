/* Differential check of flight_vote against a plain per-word reference, over lengths, alignments,
 * damage patterns and output aliasing. tests/test_native_paths.py builds it twice on x86-64 (with
 * and without the run-time AVX2 path, -DFLIGHT_NO_AVX2) so that the code a CPU without AVX2 runs
 * is checked here too; the aarch64 cross test runs it under qemu. Exit status 0: all passed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flight_native.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15u;

static uint64_t next_random(void)
{
    /* xorshift64*: deterministic, no libc rand() differences between platforms */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Du;
}

/* The reference: bitwise majority byte by byte, counted per zero-padded 8-byte word. */
static void reference(const uint8_t *a, const uint8_t *b, const uint8_t *c, uint8_t *out,
                      size_t n, flight_vote_stats *s)
{
    memset(s, 0, sizeof *s);
    for (size_t w = 0; w < n; w += 8) {
        int lost[3] = {0, 0, 0};
        for (size_t i = w; i < n && i < w + 8; i++) {
            uint8_t v = (uint8_t)((a[i] & b[i]) | (a[i] & c[i]) | (b[i] & c[i]));
            out[i] = v;
            lost[0] |= a[i] != v;
            lost[1] |= b[i] != v;
            lost[2] |= c[i] != v;
        }
        for (int r = 0; r < 3; r++) s->lost[r] += (uint64_t)lost[r];
        s->corrected += (uint64_t)(lost[0] | lost[1] | lost[2]);
    }
}

static int check_one(size_t n, size_t offset, int alias, int upsets)
{
    size_t cap = n + 64;
    uint8_t *buf[4], *expected = malloc(cap);
    for (int r = 0; r < 4; r++) buf[r] = malloc(cap);
    uint8_t *a = buf[0] + offset, *b = buf[1] + (offset * 3) % 8, *c = buf[2] + 1;
    uint8_t *out = alias ? (alias == 1 ? a : alias == 2 ? b : c) : buf[3] + (offset * 5) % 16;
    for (size_t i = 0; i < n; i++) a[i] = (uint8_t)next_random();
    memcpy(b, a, n);
    memcpy(c, a, n);
    for (int k = 0; k < upsets && n; k++) {
        uint8_t *victim = (next_random() % 3 == 0) ? a : (next_random() % 2 ? b : c);
        victim[next_random() % n] ^= (uint8_t)(1u << (next_random() % 8));
    }
    flight_vote_stats want, got;
    reference(a, b, c, expected, n, &want);
    int64_t corrected = flight_vote(a, b, c, out, n, &got);
    int bad = corrected != (int64_t)want.corrected || memcmp(out, expected, n) != 0 ||
              got.corrected != want.corrected || memcmp(got.lost, want.lost, sizeof got.lost);
    if (bad)
        printf("mismatch: n=%zu offset=%zu alias=%d upsets=%d corrected=%lld want=%llu\n", n,
               offset, alias, upsets, (long long)corrected, (unsigned long long)want.corrected);
    for (int r = 0; r < 4; r++) free(buf[r]);
    free(expected);
    return bad;
}

int main(void)
{
    static const size_t sizes[] = {0,    1,    7,    8,    9,    31,   32,   33,     100,
                                   2047, 2048, 2049, 4096, 4103, 6144, 8191, 65539, 1 << 20};
    int failures = 0, cases = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        for (size_t offset = 0; offset < 8; offset += 3)
            for (int alias = 0; alias < 4; alias++)
                for (int upsets = 0; upsets <= 40; upsets += 20) {
                    failures += check_one(sizes[i], offset, alias, upsets);
                    cases++;
                }
    printf("cases=%d failures=%d\n", cases, failures);
    return failures != 0;
}
