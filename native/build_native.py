"""cffi build script for ``flight._native`` (API / out-of-line mode).

setup.py names this file in ``cffi_modules``; ``python native/build_native.py`` builds the module
in place for a quick look. The declarations below mirror native/flight_native.h.
"""

from cffi import FFI

CDEF = """
#define FLIGHT_OK 0
#define FLIGHT_EOVERLAP -2
#define FLIGHT_EWORDSIZE -3
#define FLIGHT_ELENGTH -4

typedef struct {
    uint64_t lost[3];
    uint64_t corrected;
    uint64_t no_majority;
    int64_t first_no_majority;
} flight_vote_stats;

int flight_vote(const uint8_t *a, const uint8_t *b, const uint8_t *c, uint8_t *out, size_t n,
                flight_vote_stats *stats);
int flight_vote_words(const uint8_t *a, const uint8_t *b, const uint8_t *c, uint8_t *out,
                      size_t n, size_t w, flight_vote_stats *stats);
int flight_compare(const uint8_t *a, const uint8_t *b, size_t n, size_t w, uint64_t *mismatches,
                   int64_t *first_mismatch);
uint32_t flight_crc32c_sw(uint32_t crc, const uint8_t *p, size_t n);
uint32_t flight_crc32c_hw(uint32_t crc, const uint8_t *p, size_t n);
int flight_crc32c_blocks_sw(const uint8_t *p, size_t n, size_t block_size, uint32_t *out);
int flight_crc32c_blocks_hw(const uint8_t *p, size_t n, size_t block_size, uint32_t *out);
int flight_crc32c_hw_kind(void);
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "flight._native",
    '#include "flight_native.h"',
    sources=["native/vote.c", "native/crc32c.c"],
    include_dirs=["native"],
    extra_compile_args=["-O3", "-std=c11", "-Wall", "-Wextra"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
