/* CRC-32C (Castagnoli): portable slicing-by-8, and the CPU's CRC instructions where it has
 * them (x86-64 SSE4.2, ARMv8 CRC). Which one runs is chosen at run time by the Python face
 * (flight/crc.py) from flight_crc32c_hw_kind(); nothing here keeps state. */
#include <string.h>

#include "flight_native.h"

#include "crc32c_table.h"

static inline uint64_t load64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

/* ---- portable ---------------------------------------------------------------------------- */

static uint32_t sw_update(uint32_t c, const uint8_t *p, size_t n)
{
    while (n && ((uintptr_t)p & 7)) {
        c = crc32c_table[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
        n--;
    }
    while (n >= 8) {
        /* Little-endian word; on big-endian hosts fall back to bytes (no flown target is). */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        uint64_t w = load64(p) ^ c;
        c = crc32c_table[7][w & 0xFF] ^ crc32c_table[6][(w >> 8) & 0xFF] ^
            crc32c_table[5][(w >> 16) & 0xFF] ^ crc32c_table[4][(w >> 24) & 0xFF] ^
            crc32c_table[3][(w >> 32) & 0xFF] ^ crc32c_table[2][(w >> 40) & 0xFF] ^
            crc32c_table[1][(w >> 48) & 0xFF] ^ crc32c_table[0][w >> 56];
        p += 8;
        n -= 8;
#else
        break;
#endif
    }
    while (n--) c = crc32c_table[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c;
}

uint32_t flight_crc32c_sw(uint32_t crc, const uint8_t *p, size_t n)
{
    return ~sw_update(~crc, p, n);
}

int flight_crc32c_blocks_sw(const uint8_t *p, size_t n, size_t block_size, uint32_t *out)
{
    if (block_size == 0) return FLIGHT_ELENGTH;
    for (size_t off = 0, i = 0; off < n; off += block_size, i++) {
        size_t len = n - off < block_size ? n - off : block_size;
        out[i] = ~sw_update(0xFFFFFFFFu, p + off, len);
    }
    return FLIGHT_OK;
}

/* ---- hardware ---------------------------------------------------------------------------- */

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#define HW_KIND 1
#define HW_TARGET __attribute__((target("sse4.2")))
#define CRC_U8(c, v) _mm_crc32_u8((uint32_t)(c), (v))
#define CRC_U64(c, v) _mm_crc32_u64((c), (v))
static int hw_available(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("sse4.2");
}
#elif defined(__aarch64__) && defined(__GNUC__) && defined(__linux__)
#include <arm_acle.h>
#include <sys/auxv.h>
#ifndef HWCAP_CRC32
#define HWCAP_CRC32 (1 << 7)
#endif
#define HW_KIND 2
#define HW_TARGET __attribute__((target("+crc")))
#define CRC_U8(c, v) __crc32cb((uint32_t)(c), (v))
#define CRC_U64(c, v) __crc32cd((uint32_t)(c), (v))
static int hw_available(void) { return (getauxval(AT_HWCAP) & HWCAP_CRC32) != 0; }
#endif

#ifdef HW_KIND

int flight_crc32c_hw_kind(void) { return hw_available() ? HW_KIND : 0; }

HW_TARGET static uint32_t hw_update(uint32_t crc, const uint8_t *p, size_t n)
{
    uint64_t c = crc;
    while (n && ((uintptr_t)p & 7)) {
        c = CRC_U8(c, *p++);
        n--;
    }
    for (; n >= 8; n -= 8, p += 8) c = CRC_U64(c, load64(p));
    while (n--) c = CRC_U8(c, *p++);
    return (uint32_t)c;
}

uint32_t flight_crc32c_hw(uint32_t crc, const uint8_t *p, size_t n)
{
    return ~hw_update(~crc, p, n);
}

/* Three equal-length blocks at once: the CRC instruction has a latency of about three cycles
 * and a throughput of one per cycle, so three independent chains keep it busy. */
HW_TARGET static void hw_three(const uint8_t *p0, const uint8_t *p1, const uint8_t *p2,
                               size_t n, uint32_t *out)
{
    uint64_t c0 = 0xFFFFFFFFu, c1 = 0xFFFFFFFFu, c2 = 0xFFFFFFFFu;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        c0 = CRC_U64(c0, load64(p0 + i));
        c1 = CRC_U64(c1, load64(p1 + i));
        c2 = CRC_U64(c2, load64(p2 + i));
    }
    for (; i < n; i++) {
        c0 = CRC_U8(c0, p0[i]);
        c1 = CRC_U8(c1, p1[i]);
        c2 = CRC_U8(c2, p2[i]);
    }
    out[0] = ~(uint32_t)c0;
    out[1] = ~(uint32_t)c1;
    out[2] = ~(uint32_t)c2;
}

int flight_crc32c_blocks_hw(const uint8_t *p, size_t n, size_t block_size, uint32_t *out)
{
    if (block_size == 0) return FLIGHT_ELENGTH;
    size_t full = n / block_size, i = 0;
    for (; i + 3 <= full; i += 3)
        hw_three(p + i * block_size, p + (i + 1) * block_size, p + (i + 2) * block_size,
                 block_size, out + i);
    for (size_t off = i * block_size; off < n; off += block_size, i++) {
        size_t len = n - off < block_size ? n - off : block_size;
        out[i] = ~hw_update(0xFFFFFFFFu, p + off, len);
    }
    return FLIGHT_OK;
}

#else /* no hardware CRC on this target: the _hw entry points exist but must not be chosen */

int flight_crc32c_hw_kind(void) { return 0; }

uint32_t flight_crc32c_hw(uint32_t crc, const uint8_t *p, size_t n)
{
    return flight_crc32c_sw(crc, p, n);
}

int flight_crc32c_blocks_hw(const uint8_t *p, size_t n, size_t block_size, uint32_t *out)
{
    return flight_crc32c_blocks_sw(p, n, block_size, out);
}

#endif
