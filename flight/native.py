"""Loads the compiled extension ``flight._native`` and maps its status codes.

There is no pure-Python fallback: if the extension was not built (no C compiler at install time,
a wheel for another CPU, a stripped image), importing any module that needs it fails at once with
:class:`~flight.errors.NativeBuildError`, which says how to fix it.
"""

from __future__ import annotations

from flight import errors

try:
    from flight._native import ffi, lib
except ImportError as exc:  # pragma: no cover - exercised by a subprocess test
    raise errors.NativeBuildError(
        "flight's C extension flight._native is missing or failed to load "
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
