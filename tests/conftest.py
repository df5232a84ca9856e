"""Shared test settings: hypothesis profiles (a fast default, a thorough one for CI nights),
and the build of the C checks in tests/native/."""

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parent.parent

# Child Python processes the tests start must import the *installed* flight (with its compiled
# extension), never the source tree of the current directory: no cwd/script dir on sys.path.
os.environ["PYTHONSAFEPATH"] = "1"

settings.register_profile(
    "default", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def build_native_check(tmp_path: Path) -> Callable[..., Path]:
    """``build(cc, check, *flags)``: compile tests/native/<check>.c with the native core (C11,
    every warning an error) into tmp_path; returns the executable."""

    def build(cc: str, check: str, *flags: str) -> Path:
        exe = tmp_path / check
        native = ROOT / "native"
        subprocess.run(
            [
                cc, "-O3", "-std=c11", "-Wall", "-Wextra", "-Werror", *flags, f"-I{native}",
                str(ROOT / "tests" / "native" / f"{check}.c"),
                str(native / "vote.c"), str(native / "crc32c.c"), "-o", str(exe),
            ],
            check=True,
            timeout=120,
        )  # fmt: skip
        return exe

    return build
