/* flight native core: voting, compare and CRC-32C over raw bytes.
 *
 * Rules: no allocation, no global state, status codes only (the voters return a count >= 0 on
 * success, so that the Python face can skip reading the stats record when nothing was wrong).
 * The Python face (flight/vote.py, flight/crc.py) validates arguments and maps status codes to
 * exceptions.
 */
#ifndef FLIGHT_NATIVE_H
#define FLIGHT_NATIVE_H

#include <stddef.h>
#include <stdint.h>

#define FLIGHT_OK 0
#define FLIGHT_EOVERLAP (-2)  /* out partially overlaps an input */
#define FLIGHT_EWORDSIZE (-3) /* word size not in {1, 2, 4, 8} */
#define FLIGHT_ELENGTH (-4)   /* length not a multiple of the word size */

/* Result record of the voters. Counts are in words. */
typedef struct {
    uint64_t lost[3];     /* words in which replica i disagreed with the voted word */
    uint64_t corrected;   /* words in which at least one replica was outvoted */
    uint64_t no_majority; /* words where all three replicas differ (vote_words only) */
    int64_t first_no_majority; /* index of the first such word, -1 if none */
} flight_vote_stats;

/* Bitwise majority (a&b)|(a&c)|(b&c) over n bytes, counted in 8-byte words (a trailing partial
 * word counts as one). out may be exactly one of the inputs, but must not partially overlap.
 * Returns a negative status, or the number of corrected words (stats->corrected): 0, the common
 * case, tells the caller that every count in stats is zero without reading it. */
int64_t flight_vote(const uint8_t *a, const uint8_t *b, const uint8_t *c, uint8_t *out,
                    size_t n, flight_vote_stats *stats);

/* Word-wise majority with word size w in {1,2,4,8}: a word equal in two replicas wins; a word
 * that differs in all three is counted in no_majority (out gets the bitwise majority, but the
 * caller must treat it as a detected, uncorrectable error). n must be a multiple of w.
 * Returns a negative status, or the number of words that were not unanimous (corrected plus
 * no_majority). */
int64_t flight_vote_words(const uint8_t *a, const uint8_t *b, const uint8_t *c, uint8_t *out,
                          size_t n, size_t w, flight_vote_stats *stats);

/* Two-way compare for duplicate-with-compare: mismatching words of size w and the first one. */
int flight_compare(const uint8_t *a, const uint8_t *b, size_t n, size_t w, uint64_t *mismatches,
                   int64_t *first_mismatch);

/* CRC-32C (Castagnoli, reflected, init and xorout 0xFFFFFFFF). crc is the running value
 * (0 to start), exactly like zlib.crc32's second argument. */
uint32_t flight_crc32c_sw(uint32_t crc, const uint8_t *p, size_t n);
uint32_t flight_crc32c_hw(uint32_t crc, const uint8_t *p, size_t n);

/* CRC-32C of each block_size-byte block of p[0..n) (the last block may be shorter) into
 * out[0 .. ceil(n / block_size)). */
int flight_crc32c_blocks_sw(const uint8_t *p, size_t n, size_t block_size, uint32_t *out);
int flight_crc32c_blocks_hw(const uint8_t *p, size_t n, size_t block_size, uint32_t *out);

/* Which hardware CRC-32C this CPU offers: 0 none, 1 x86-64 SSE4.2, 2 ARMv8 CRC. The _hw
 * functions must only be called when this returns non-zero. */
int flight_crc32c_hw_kind(void);

#endif
