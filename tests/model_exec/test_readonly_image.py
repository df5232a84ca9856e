"""flight on a read-only image: a seeded numba cache on tmpfs, or one clear error message.

Runs flight in a private mount namespace (``unshare -m``, needs root) where the installed
package is bind-mounted read-only, like an on-board computer's root filesystem.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import flight

PACKAGE = Path(flight.__file__).resolve().parent
DEMO = PACKAGE / "data" / "digits_cnn.flm"


def _namespaces_work() -> bool:
    if not shutil.which("unshare") or os.geteuid() != 0:
        return False
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=30)
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(not _namespaces_work(), reason="needs root and unshare -m")

RUN_DEMO = (
    "import numpy as np; from flight.model import load; "
    f"m = load({str(DEMO)!r}); print(float(m.run(np.ones((1, 1, 8, 8), np.float32)).sum()))"
)


def _in_readonly_namespace(script: str, env: dict[str, str], extra_mounts: str = ""):
    shell = (
        f"set -e; mount --bind {PACKAGE} {PACKAGE}; mount -o remount,bind,ro {PACKAGE}; "
        f'{extra_mounts} exec {sys.executable} -c "$FLIGHT_TEST_SCRIPT"'
    )
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": "/proc/flight-home",  # even root cannot create a cache there
        "FLIGHT_TEST_SCRIPT": script,
        **env,
    }
    return subprocess.run(
        ["unshare", "-m", "bash", "-c", shell],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=600,
        cwd="/",
    )


@pytest.fixture(scope="module")
def seed(tmp_path_factory):
    """A cache built the documented way: `flight cache build DIR`."""
    directory = tmp_path_factory.mktemp("seed")
    proc = subprocess.run(
        [sys.executable, "-m", "flight.cli", "cache", "build", str(directory)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd="/",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list(directory.rglob("*.nbi")), "cache build wrote no index files"
    return directory


def _files(directory: Path) -> set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file()}


def test_seeded_tmpfs_cache_runs_without_compiling(seed, tmp_path):
    cache = tmp_path / "tmpfs-cache"
    cache.mkdir()
    proc = _in_readonly_namespace(
        RUN_DEMO,
        {"NUMBA_CACHE_DIR": str(cache), "FLIGHT_NUMBA_CACHE_SEED": str(seed)},
        extra_mounts=f"mount -t tmpfs tmpfs {cache};",
    )
    assert proc.returncode == 0, proc.stderr
    float(proc.stdout.strip())
    # The run happened on the tmpfs, which is gone with the namespace; what we can see is that
    # the package stayed untouched and the seed was enough: run again with the seed as the
    # (writable) cache and check that nothing new was compiled into it.
    before = _files(seed)
    again = _in_readonly_namespace(RUN_DEMO, {"NUMBA_CACHE_DIR": str(seed)})
    assert again.returncode == 0, again.stderr
    assert _files(seed) == before, "the seeded cache was incomplete: kernels were compiled"


def test_no_writable_cache_location_is_one_clear_error(tmp_path):
    readonly = "".join(
        f"mount --bind {d} {d}; mount -o remount,bind,ro {d};" for d in ("/tmp", "/dev/shm")
    )
    script = (
        "import sys; from flight.cli import main; "
        f"sys.exit(main(['model', 'run', {str(DEMO)!r}, '--input', '/nonexistent.npy', "
        "'--output', '/nonexistent-out.npy']))"
    )
    proc = _in_readonly_namespace(script, {}, extra_mounts=readonly)
    assert proc.returncode == 78, proc.stdout + proc.stderr  # EX_CONFIG
    assert "Traceback" not in proc.stderr
    assert "JitCacheError" in proc.stderr and "NUMBA_CACHE_DIR" in proc.stderr


def test_unwritable_numba_cache_dir_is_reported(tmp_path):
    proc = _in_readonly_namespace(
        "from flight.model import load; load(" + repr(str(DEMO)) + ")",
        {"NUMBA_CACHE_DIR": "/proc/flight-cache"},
    )
    assert proc.returncode != 0
    assert "JitCacheError" in proc.stderr and "not a writable directory" in proc.stderr
