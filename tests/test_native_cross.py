"""The native core on aarch64 (ARMv8 CRC instructions), cross-compiled and run under qemu.

Flight boards are often aarch64; this test needs `aarch64-linux-gnu-gcc` and `qemu-aarch64`
(Debian: gcc-aarch64-linux-gnu, libc6-dev-arm64-cross, qemu-user) and is skipped without them.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

CC, QEMU = "aarch64-linux-gnu-gcc", "qemu-aarch64"


def _run_under_qemu(exe: Path, cpu: str) -> str:
    """The output of an aarch64 executable under qemu (which must exit 0)."""
    proc = subprocess.run(
        [QEMU, "-cpu", cpu, "-L", "/usr/aarch64-linux-gnu", str(exe)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


needs_cross = pytest.mark.skipif(
    not (shutil.which(CC) and shutil.which(QEMU)), reason="aarch64 cross toolchain/qemu missing"
)


@needs_cross
@pytest.mark.parametrize("cpu", ["max", "cortex-a53"])
def test_native_core_on_aarch64(build_native_check, cpu):
    exe = build_native_check(CC, "portable_check")
    assert "hw_kind=2 failures=0" in _run_under_qemu(exe, cpu)


@needs_cross
def test_vote_paths_on_aarch64(build_native_check):
    """The differential vote check of tests/test_native_paths.py, on the aarch64 (NEON) code."""
    exe = build_native_check(CC, "vote_paths_check")
    assert "failures=0" in _run_under_qemu(exe, "cortex-a53")
