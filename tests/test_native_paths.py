"""Every code path of the C voter against a plain reference, built natively.

On x86-64 the voter picks an AVX2 loop at run time when the CPU has it, so the Python tests on
this machine never run the baseline (SSE2) loop that an older or smaller CPU would. The C check
is built twice, with and without the AVX2 path, and both builds must agree with the reference.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import sysconfig

import pytest


def _compiler() -> str:
    for candidate in [*(sysconfig.get_config_var("CC") or "").split()[:1], "cc", "gcc"]:
        if candidate and shutil.which(candidate):
            return candidate
    pytest.fail("no C compiler found, but installing flight needs one")


VARIANTS = ["default"] + (["no-avx2"] if platform.machine() in ("x86_64", "AMD64") else [])


@pytest.mark.parametrize("variant", VARIANTS)
def test_vote_paths_match_the_reference(build_native_check, variant):
    defines = ["-DFLIGHT_NO_AVX2"] if variant == "no-avx2" else []
    exe = build_native_check(_compiler(), "vote_paths_check", *defines)
    proc = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "failures=0" in proc.stdout and "cases=0" not in proc.stdout
