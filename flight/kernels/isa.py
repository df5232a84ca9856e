"""Which vector ISA the kernels are built for, read from the CPU numba compiles for.

The GEMM micro-kernel (:mod:`._ukernel`) is written for a register tile of ``MR x NR`` floats in
vectors of ``VW`` lanes. The right tile depends on the vector registers the CPU has: 32 zmm (16
lanes) with AVX-512, 16 ymm (8 lanes) with AVX2+FMA, 32 q (4 lanes) with NEON. onnxruntime picks
its kernels for the host at run time; flight does the same, at import, before any kernel compiles.

The choice is derived from *numba's own target* (its CPU name and feature string), never set
beside it. That is what keeps numba's on-disk cache honest: numba keys cached machine code on
(triple, CPU name, features) but not on the values of module globals such as ``MR``; since the
tile is a function of that key, a cache entry can never hold code built for another tile.

Forcing a narrower path on a wider host (to run and test the AVX2 path on an AVX-512 machine) is
done with ``FLIGHT_KERNEL_ISA=avx2|generic``: the AVX-512 (and, for ``generic``, AVX
and FMA) features are switched off in ``NUMBA_CPU_FEATURES``, so LLVM cannot use them anywhere,
and the cache gets separate entries. Forcing a path the host lacks is refused: its code would die
on an illegal instruction. Setting ``NUMBA_CPU_NAME`` and ``NUMBA_CPU_FEATURES`` yourself (e.g. to
inspect the code for another CPU, or to seed a cache for a flight CPU) is followed as is.

What holds across paths: every output element is the same chain of fused multiply-adds in the
same order on every FMA path (AVX-512, AVX2, NEON), because tiles only change which outputs are
computed together, never the order of one output's sum (see :mod:`._ukernel`); the ``generic``
path has no FMA, so its products are rounded before the add and its bits differ (within the
usual float32 tolerance). docs/models.md has the tested statement.
"""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass
from typing import Any

from flight.errors import KernelPathError

__all__ = ["PATHS", "KernelPath", "KernelPathError", "current", "features_for"]

#: Environment variable that forces a narrower kernel path than the host's.
ENV = "FLIGHT_KERNEL_ISA"


@dataclass(frozen=True)
class KernelPath:
    """A vector ISA and the micro-kernel tile built for it."""

    name: str
    #: float32 lanes per vector register
    vw: int
    #: rows of the register tile (output channels of a convolution)
    mr: int
    #: columns of the register tile (output pixels), a multiple of ``vw``
    nr: int
    #: True when multiply-adds are fused (the same bits on every FMA path)
    fma: bool


#: Tiles: accumulators (MR * NR / VW) + B vectors (NR / VW) + one broadcast fit the register file.
PATHS = {
    # 32 zmm: 8 x 2 accumulators + 2 B + 1 broadcast = 19 (measured against 12 and 14 rows: 8
    # divides the usual channel counts, so no tile row is wasted; the FMA units are the limit)
    "avx512": KernelPath("avx512", vw=16, mr=8, nr=32, fma=True),
    # 16 ymm: 5 x 2 + 2 + 1 = 13 (the tile flight has always used on x86-64)
    "avx2": KernelPath("avx2", vw=8, mr=5, nr=16, fma=True),
    # 32 q: 6 x 4 + 4 + 1 = 29
    "neon": KernelPath("neon", vw=4, mr=6, nr=16, fma=True),
    # 16 xmm, no FMA: 4 x 2 + 2 + 1 = 11
    "generic": KernelPath("generic", vw=4, mr=4, nr=8, fma=False),
}
_ORDER = ("generic", "avx2", "avx512")  # x86-64 paths, narrowest first
#: Feature prefixes of AVX-512 and what implies it (AVX10, AMX): off below the avx512 path.
_AVX512 = ("avx512", "avx10", "amx", "evex512")
_GENERIC_OFF = ("avx", "fma", "f16c", "vaes", "vpclmulqdq", "gfni")


def _flags(features: str) -> dict[str, bool]:
    out = {}
    for item in filter(None, features.split(",")):
        out[item[1:]] = item[0] == "+"
    return out


#: CPU names (LLVM's, by prefix) whose default features include AVX-512 / AVX2+FMA: used for a
#: feature that the feature string leaves unsaid (``NUMBA_CPU_NAME`` with partial features).
_AVX512_CPUS = (
    "skylake-avx512", "cascadelake", "cooperlake", "cannonlake", "icelake", "tigerlake",
    "rocketlake", "sapphirerapids", "emeraldrapids", "graniterapids", "diamondrapids",
    "znver4", "znver5", "x86-64-v4",
)  # fmt: skip
_AVX2_CPUS = (
    "haswell", "broadwell", "skylake", "kabylake", "coffeelake", "cometlake", "alderlake",
    "raptorlake", "meteorlake", "arrowlake", "lunarlake", "pantherlake", "znver1", "znver2",
    "znver3", "x86-64-v3",
)  # fmt: skip


def _cpu_level(cpu: str) -> int:
    """2 for an AVX-512 CPU name, 1 for AVX2+FMA, 0 otherwise (generic, unknown, older)."""
    if cpu.startswith(_AVX512_CPUS):
        return 2
    return 1 if cpu.startswith(_AVX2_CPUS) else 0


def _path_of(machine: str, features: str, cpu: str = "") -> KernelPath:
    """The path for a target: explicit ``+x``/``-x`` features win over the CPU name's defaults."""
    if machine in ("aarch64", "arm64"):
        return PATHS["neon"]
    flags = _flags(features)
    level = _cpu_level(cpu)
    fma = flags.get("fma", level >= 1)
    if flags.get("avx512f", level >= 2) and fma:
        return PATHS["avx512"]
    if flags.get("avx2", level >= 1) and fma:
        return PATHS["avx2"]
    return PATHS["generic"]


def features_for(name: str, host_features: str) -> str:
    """``host_features`` with everything wider than path ``name`` switched off (x86-64)."""
    if name not in _ORDER:
        raise KernelPathError(f"{ENV}={name!r}: expected one of {', '.join(_ORDER)} (or auto)")
    flags = _flags(host_features)
    host = _path_of("x86_64", host_features).name
    if _ORDER.index(name) > _ORDER.index(host):
        raise KernelPathError(
            f"{ENV}={name}: this CPU has no {name} (its widest path is {host}); the code would "
            "stop on an illegal instruction. To only inspect code for another CPU, set "
            "NUMBA_CPU_NAME and NUMBA_CPU_FEATURES instead."
        )
    off: tuple[str, ...] = ()
    if name in ("avx2", "generic"):
        off += _AVX512
    if name == "generic":
        off += _GENERIC_OFF
    for key in flags:
        if key.startswith(off):
            flags[key] = False
    return ",".join(("+" if on else "-") + key for key, on in flags.items())


def _target() -> tuple[str, str, str]:
    """(triple machine, CPU name, features) of numba's CPU code generator."""
    from numba.core.registry import cpu_target

    codegen = cpu_target.target_context.codegen()
    name, features = codegen._get_host_cpu_name(), codegen._tm_features
    return platform.machine(), name, features


def _apply_override(environ: dict[str, str]) -> str | None:
    want = environ.get(ENV, "auto").strip().lower() or "auto"
    if want == "auto":
        return None
    if platform.machine() in ("aarch64", "arm64"):
        if want != "neon":
            raise KernelPathError(f"{ENV}={want}: an aarch64 host has one path, neon")
        return want
    from numba.core import codegen, config

    host = config.CPU_FEATURES
    if host is None:
        host = codegen.get_host_cpu_features()
    wanted = features_for(want, host)
    os.environ["NUMBA_CPU_FEATURES"] = wanted
    config.reload_config()
    return want


def _select() -> tuple[KernelPath, dict[str, Any]]:
    forced = _apply_override(dict(os.environ))
    machine, cpu, features = _target()
    path = _path_of(machine, features, cpu)
    if forced is not None and forced != path.name:
        raise KernelPathError(
            f"{ENV}={forced} was set after numba built its code generator (for {path.name}); set "
            "it in the environment before flight starts"
        )
    info = {"machine": machine, "cpu_name": cpu, "forced": forced, **asdict(path)}
    return path, info


PATH, _INFO = _select()


def current() -> dict[str, Any]:
    """The kernel path in use: name, lanes, tile, FMA, CPU name, forced or not (for reports)."""
    return dict(_INFO)
