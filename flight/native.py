"""Loads the compiled extension ``flight._native`` and maps its status codes.

There is no pure-Python fallback: if the extension was not built (no C compiler at install time,
a wheel for another CPU, a stripped image), importing any module that needs it fails at once with
:class:`~flight.errors.NativeBuildError`, which says how to fix it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from flight import errors


def _source_tree_message(package: Path, exc: ImportError) -> str | None:
    """The explanation when ``flight`` is imported from an unbuilt source checkout, else None.

    The newcomer trap: after ``pip install .``, Python started at the repository root imports
    the source tree's ``flight/`` (the current directory comes first on ``sys.path``), which has
    no built extension, and the installed copy is never reached. Reinstalling would not help.
    """
    root = package.parent
    if not ((root / "setup.py").is_file() and (root / "native").is_dir()):
        return None
    installed = [
        candidate
        for candidate in (Path(entry or ".").resolve() / "flight" for entry in sys.path)
        if candidate != package and (candidate / "__init__.py").is_file()
    ]
    elsewhere = f"; an installed flight is at {installed[0]}" if installed else ""
    return (
        f"you are importing flight from its source tree at {package}, where the native "
        f"extension flight._native is not built ({exc}){elsewhere}. Leave the source directory "
        "(cd elsewhere) to use the installed flight, or build the extension in place with "
        "`pip install -e .`."
    )


try:
    from flight._native import ffi, lib
except ImportError as exc:  # pragma: no cover - exercised by subprocess tests
    _package = Path(__file__).resolve().parent
    raise errors.NativeBuildError(
        _source_tree_message(_package, exc)
        or "flight's C extension flight._native is missing or failed to load "
        f"({exc}). Reinstall flight on this machine with a C compiler available "
        "(`pip install .`), or install a wheel built for this CPU and Python."
    ) from exc

__all__ = ["check_status", "ffi", "lib"]

_STATUS_ERRORS: dict[int, tuple[type[errors.FlightError], str]] = {
    lib.FLIGHT_EOVERLAP: (errors.OverlapError, "out partially overlaps an input"),
    lib.FLIGHT_EWORDSIZE: (errors.WordSizeError, "word size must be 1, 2, 4 or 8 bytes"),
    lib.FLIGHT_ELENGTH: (errors.WordSizeError, "length is not a multiple of the word size"),
}


def check_status(status: int) -> None:
    """Raise the exception that a native status code stands for (no-op for FLIGHT_OK)."""
    if status == lib.FLIGHT_OK:
        return
    exc_type, message = _STATUS_ERRORS.get(
        status, (errors.NativeStatusError, f"unknown native status {status}")
    )
    raise exc_type(message)
