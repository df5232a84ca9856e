"""The native core on aarch64 (ARMv8 CRC instructions), cross-compiled and run under qemu.

Flight boards are often aarch64; this test needs `aarch64-linux-gnu-gcc` and `qemu-aarch64`
(Debian: gcc-aarch64-linux-gnu, libc6-dev-arm64-cross, qemu-user) and is skipped without them.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CC, QEMU = "aarch64-linux-gnu-gcc", "qemu-aarch64"


def _build_and_run(tmp_path: Path, check: str, cpu: str) -> str:
    """Cross-compile tests/native/<check>.c with the native core; its output under qemu."""
    exe = tmp_path / check
    native = ROOT / "native"
    subprocess.run(
        [
            CC,
            "-O3",
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Werror",
            f"-I{native}",
            str(ROOT / "tests" / "native" / f"{check}.c"),
            str(native / "vote.c"),
            str(native / "crc32c.c"),
            "-o",
            str(exe),
        ],
        check=True,
        timeout=120,
    )
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
def test_native_core_on_aarch64(tmp_path, cpu):
    assert "hw_kind=2 failures=0" in _build_and_run(tmp_path, "portable_check", cpu)


@needs_cross
def test_vote_paths_on_aarch64(tmp_path):
    """The differential vote check of tests/test_native_paths.py, on the aarch64 (NEON) code."""
    assert "failures=0" in _build_and_run(tmp_path, "vote_paths_check", "cortex-a53")
