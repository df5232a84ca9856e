"""cffi build script for ``flight._native`` (API / out-of-line mode).

setup.py names this file in ``cffi_modules``; ``python native/build_native.py`` builds the module
in place for a quick look. The declarations come from native/flight_native.h itself.
"""

import re
from pathlib import Path

from cffi import FFI

HEADER = Path(__file__).resolve().parent / "flight_native.h"


def cdef_from_header(text: str) -> str:
    """The header's declarations as cffi's cdef takes them: the one source of truth for the
    binding. Preprocessor lines go, except the status-code constants (without parentheses)."""
    kept = []
    for line in text.splitlines():
        if line.startswith("#"):
            match = re.match(r"#define (FLIGHT_[A-Z]+) \(?(-?\d+)\)?", line)
            if not match:
                continue
            line = f"#define {match.group(1)} {match.group(2)}"
        kept.append(line)
    return "\n".join(kept)


ffibuilder = FFI()
ffibuilder.cdef(cdef_from_header(HEADER.read_text()))
ffibuilder.set_source(
    "flight._native",
    '#include "flight_native.h"',
    sources=["native/vote.c", "native/crc32c.c"],
    include_dirs=["native"],
    extra_compile_args=["-O3", "-std=c11", "-Wall", "-Wextra"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
