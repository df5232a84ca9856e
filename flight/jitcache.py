"""Where numba keeps compiled kernels, on a laptop and on a read-only flight image.

numba's ``cache=True`` writes compiled code next to the sources (``__pycache__``) or under the
user's cache directory, and *raises at import* when neither is writable (numba issues #4908,
#5566). An on-board computer's root filesystem is usually read-only. flight therefore picks the
cache directory itself, before any kernel module is imported:

1. ``NUMBA_CACHE_DIR`` when set (the documented way on a board: a tmpfs directory);
2. numba's default (next to the sources) when the package directory is writable;
3. otherwise the first writable of ``$XDG_CACHE_HOME/flight/numba`` (or ``~/.cache/...``),
   ``/dev/shm/flight-numba-<uid>``, ``$TMPDIR/flight-numba-<uid>``.

If ``FLIGHT_NUMBA_CACHE_SEED`` names a directory (a cache built by ``flight cache build`` and
shipped in the image) and the chosen directory has no cache yet, the seed is copied into it at
start, so the first inference after boot loads machine code instead of compiling it. numba keys
its cache on the source path and the CPU: seed it with the installed image on the target CPU
(or pin ``NUMBA_CPU_NAME`` both when seeding and when flying).

When no location is writable, :class:`JitCacheError` says so in one message (the CLI prints it
without a traceback).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

from flight import errors

__all__ = ["JitCacheError", "configure", "configured_dir", "drop_stale_kernels"]

_configured: Path | None = None
_done = False


class JitCacheError(errors.FlightError, RuntimeError):
    """No writable location for numba's compiled-kernel cache."""


def _writable(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
        return True
    except OSError:
        return False


def _fallbacks(environ: dict[str, str]) -> list[Path]:
    uid = os.getuid() if hasattr(os, "getuid") else 0
    home_cache = environ.get("XDG_CACHE_HOME") or os.path.join(
        environ.get("HOME", "/nonexistent"), ".cache"
    )
    return [
        Path(home_cache) / "flight" / "numba",
        Path("/dev/shm") / f"flight-numba-{uid}",
        # not tempfile.gettempdir(): it raises when no temporary directory is writable
        Path(environ.get("TMPDIR") or "/tmp") / f"flight-numba-{uid}",
    ]


def _seed(target: Path, seed: str | None) -> None:
    if not seed:
        return
    source = Path(seed)
    if not source.is_dir():
        raise JitCacheError(f"FLIGHT_NUMBA_CACHE_SEED={seed!r} is not a directory")
    if any(target.rglob("*.nbi")):
        return  # already populated (e.g. a warm restart)
    shutil.copytree(source, target, dirs_exist_ok=True)


def configure(environ: dict[str, str] | None = None) -> Path | None:
    """Choose numba's cache directory (idempotent). Returns it, or None for numba's default."""
    global _configured, _done
    if _done:
        return _configured
    env = dict(os.environ if environ is None else environ)
    package_dir = Path(__file__).resolve().parent
    explicit = env.get("NUMBA_CACHE_DIR")
    seed = env.get("FLIGHT_NUMBA_CACHE_SEED")
    if explicit:
        chosen = Path(explicit)
        if not _writable(chosen):
            raise JitCacheError(
                f"NUMBA_CACHE_DIR={explicit!r} is not a writable directory; numba must write its "
                "cache index there. On a read-only image point it at tmpfs (e.g. /run/flight/"
                "numba) and ship a seed (FLIGHT_NUMBA_CACHE_SEED, see docs/models.md)."
            )
    elif _writable(package_dir / "kernels" / "__pycache__") and not seed:
        _done = True
        return None
    else:
        tried = _fallbacks(env)
        chosen = next((p for p in tried if _writable(p)), None)
        if chosen is None:
            raise JitCacheError(
                "no writable location for numba's compiled-kernel cache: the flight package "
                f"({package_dir}) is read-only and so are {', '.join(map(str, tried))}. Set "
                "NUMBA_CACHE_DIR to a writable directory (tmpfs on a flight image), optionally "
                "seeded from a cache built with `flight cache build DIR` via "
                "FLIGHT_NUMBA_CACHE_SEED=DIR."
            )
    _seed(chosen, seed)
    os.environ["NUMBA_CACHE_DIR"] = str(chosen)
    if "numba" in sys.modules:  # numba read its configuration at import: make it read again
        from numba.core import config

        config.reload_config()
    _configured, _done = chosen, True
    return chosen


def configured_dir() -> Path | None:
    """The directory chosen by :func:`configure` (None: numba's default next to the sources)."""
    return _configured


#: Name of the file, beside numba's cache files of the kernels, that holds their sources' digest.
STAMP = "flight-kernels.stamp"


def kernel_sources_digest(package_dir: Path) -> str:
    """SHA-256 over every kernel module's source, in name order."""
    digest = hashlib.sha256()
    for path in sorted(package_dir.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def drop_stale_kernels(package_dir: Path, cache_dir: Path) -> bool:
    """Delete numba's cached kernels when any kernel source changed since they were cached.

    numba checks a cached function against its *own* file only. The kernels inline intrinsics
    and constants from other files (the micro-kernel, the kernel path's tile), so after an edit
    to ``_ukernel.py`` or ``isa.py`` numba would load code built for the old tile from
    ``conv.py``'s cache: wrong results, even heap corruption. A digest of all kernel sources,
    kept beside the cache, catches that; an installed release (whose files do not change)
    never pays more than the hash. Returns True when something was dropped.
    """
    stamp = cache_dir / STAMP
    digest = kernel_sources_digest(package_dir)
    try:
        if stamp.read_text() == digest:
            return False
    except OSError:
        pass
    dropped = False
    for entry in list(cache_dir.glob("*.nbi")) + list(cache_dir.glob("*.nbc")):
        try:
            entry.unlink()
            dropped = True
        except FileNotFoundError:  # another process dropped it first
            pass
    # a read-only cache: numba cannot write there either; nothing to protect
    with contextlib.suppress(OSError):
        stamp.write_text(digest)
    return dropped
