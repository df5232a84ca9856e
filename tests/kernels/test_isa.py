"""The kernel path follows the CPU numba compiles for; forced narrower paths give the same bits.

What holds across paths (docs/models.md, "Kernel paths"): the FMA paths (AVX-512, AVX2, NEON)
compute every output with the same chain of fused multiply-adds in the same order, so a model
gives the same bits on each; the generic path (no FMA) rounds products first, so it only agrees
within float32 tolerance. Checked here by running real models in fresh processes with
``FLIGHT_KERNEL_ISA`` forced, and by reading the machine code numba generates for a named CPU.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from flight.errors import KernelPathError
from flight.kernels import isa

TOOLS = Path(__file__).resolve().parents[2] / "tools"
X86 = platform.machine() in ("x86_64", "AMD64")
HOST = isa.current()["name"]

AVX512_HOST = (
    "+64bit,+avx,+avx2,+avx512bw,+avx512cd,+avx512dq,+avx512f,+avx512vl,+avx512vnni,+bmi,"
    "+bmi2,+f16c,+fma,+popcnt,+sse,+sse2,+sse3,+sse4.1,+sse4.2,+ssse3,-amx-tile,+gfni,+vaes"
)


def test_paths_from_features_and_cpu_names():
    assert isa._path_of("x86_64", AVX512_HOST).name == "avx512"
    assert isa._path_of("x86_64", "+avx,+avx2,+fma,+sse4.2").name == "avx2"
    assert isa._path_of("x86_64", "+avx,+avx2,-fma").name == "generic"  # no FMA: not AVX2 path
    assert isa._path_of("x86_64", "+sse2").name == "generic"
    assert isa._path_of("aarch64", "+neon").name == "neon"
    # a CPU name's defaults fill in what the feature string leaves unsaid; explicit flags win
    assert isa._path_of("x86_64", "", "skylake-avx512").name == "avx512"
    assert isa._path_of("x86_64", "", "icelake-server").name == "avx512"
    assert isa._path_of("x86_64", "", "haswell").name == "avx2"
    assert isa._path_of("x86_64", "-avx512f", "znver4").name == "avx2"
    assert isa._path_of("x86_64", "", "generic").name == "generic"


def test_every_path_tile_fits_its_register_file():
    registers = {"avx512": 32, "avx2": 16, "neon": 32, "generic": 16}
    for name, path in isa.PATHS.items():
        assert path.nr % path.vw == 0, name
        vectors = path.nr // path.vw
        assert path.mr * vectors + vectors + 1 <= registers[name], name


def test_forcing_switches_off_the_wider_features_only():
    avx2 = isa.features_for("avx2", AVX512_HOST)
    flags = isa._flags(avx2)
    assert not any(on for key, on in flags.items() if key.startswith("avx512"))
    assert flags["avx2"] and flags["fma"] and flags["gfni"] and not flags["amx-tile"]
    assert isa._path_of("x86_64", avx2).name == "avx2"
    generic = isa.features_for("generic", AVX512_HOST)
    flags = isa._flags(generic)
    assert not any(on for key, on in flags.items() if key.startswith(("avx", "fma")))
    assert flags["sse4.2"]
    assert isa._path_of("x86_64", generic).name == "generic"
    assert isa.features_for("avx512", AVX512_HOST) == AVX512_HOST
    # a newer host: AVX10 and AMX imply AVX-512 registers, so they go too
    newer = AVX512_HOST + ",+avx10.1-512,+amx-avx512,+amx-bf16,+evex512"
    flags = isa._flags(isa.features_for("avx2", newer))
    assert not any(flags[key] for key in ("avx10.1-512", "amx-avx512", "amx-bf16", "evex512"))


def test_forcing_a_wider_or_unknown_path_is_refused():
    with pytest.raises(KernelPathError, match="no avx512"):
        isa.features_for("avx512", "+avx,+avx2,+fma")
    with pytest.raises(KernelPathError, match="expected one of"):
        isa.features_for("avx9", AVX512_HOST)


def test_current_path_is_the_one_the_kernels_use():
    from flight.kernels import _ukernel

    info = isa.current()
    assert (info["vw"], info["mr"], info["nr"]) == (_ukernel.VW, _ukernel.MR, _ukernel.NR)
    assert info["name"] == isa.PATH.name


# -- real models in fresh processes, one per forced path ---------------------------------------

_RUN_MODELS = """
import hashlib, json, sys
import numpy as np
sys.path.insert(0, {tools!r})
from onnx_models import mobilenet_v2_like, resnet18
from flight.kernels import isa
from flight.model.executor import Model
from flight.model.onnx_import import convert_onnx
out = {{"path": isa.current()["name"]}}
nets = (("resnet18", resnet18(13, size=48)), ("mobilenet", mobilenet_v2_like(13, size=40)))
for name, onnx_model in nets:
    graph = convert_onnx(onnx_model)
    model = Model(graph, copies=1)
    shape = model.shapes[model.input_names[0]]
    x = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
    y = np.array(model.run(x), dtype=np.float32)
    np.save({dest!r} + "/" + name + "-" + out["path"] + ".npy", y)
    out[name] = hashlib.sha256(y.tobytes()).hexdigest()
print(json.dumps(out))
"""


def _run_forced(path: str | None, dest: Path) -> dict:
    env = dict(os.environ)
    env.pop("FLIGHT_KERNEL_ISA", None)
    if path is not None:
        env["FLIGHT_KERNEL_ISA"] = path
    code = textwrap.dedent(_RUN_MODELS.format(tools=str(TOOLS), dest=str(dest)))
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not X86 or HOST != "avx512", reason="needs an AVX-512 host to force AVX2")
def test_forced_avx2_gives_the_same_bits_as_avx512(tmp_path):
    wide = _run_forced(None, tmp_path)
    narrow = _run_forced("avx2", tmp_path)
    assert (wide["path"], narrow["path"]) == ("avx512", "avx2")
    assert wide["resnet18"] == narrow["resnet18"]
    assert wide["mobilenet"] == narrow["mobilenet"]


@pytest.mark.slow
@pytest.mark.skipif(not X86 or HOST == "generic", reason="needs an FMA host")
def test_forced_generic_path_agrees_within_tolerance(tmp_path):
    fma = _run_forced(None, tmp_path)
    plain = _run_forced("generic", tmp_path)
    assert plain["path"] == "generic"
    for name in ("resnet18", "mobilenet"):
        a = np.load(tmp_path / f"{name}-{fma['path']}.npy")
        b = np.load(tmp_path / f"{name}-generic.npy")
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


# -- the machine code numba generates for a named CPU -----------------------------------------

_ASM = """
import json
from numba import types
from flight.kernels import isa
from flight.kernels.gemm import _macro
arr = types.Array(types.float32, 1, "C")
i = types.int64
sig = (arr, i, arr, i, i, i, i, i, i, i, arr, i, i, types.boolean)
_macro.compile(sig)
asm = _macro.inspect_asm(sig)
fma = [line for line in asm.splitlines() if "vfmadd" in line]
print(json.dumps({
    "path": isa.current()["name"],
    "fma_zmm": sum("zmm" in line for line in fma),
    "fma_ymm": sum("ymm" in line for line in fma),
    "zmm": asm.count("zmm"),
}))
"""


def _asm_for(tmp_path: Path, **env_extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_CPU", "FLIGHT_KERNEL"))}
    env.update(env_extra, NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    proc = subprocess.run(
        [sys.executable, "-c", _ASM], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not X86, reason="x86-64 code generation")
def test_code_for_an_avx512_cpu_uses_16_lane_registers(tmp_path):
    # compiled, never run: this passes on an AVX2-only host too
    got = _asm_for(tmp_path, NUMBA_CPU_NAME="skylake-avx512", NUMBA_CPU_FEATURES="")
    assert got["path"] == "avx512"
    assert got["fma_zmm"] >= 16 and got["fma_ymm"] == 0


@pytest.mark.skipif(not X86, reason="x86-64 code generation")
def test_code_for_an_avx2_cpu_uses_8_lane_registers_and_no_zmm(tmp_path):
    got = _asm_for(tmp_path, NUMBA_CPU_NAME="haswell", NUMBA_CPU_FEATURES="")
    assert got["path"] == "avx2"
    assert got["fma_ymm"] >= 10 and got["zmm"] == 0


@pytest.mark.skipif(not X86 or HOST != "avx512", reason="needs an AVX-512 host")
def test_forced_avx2_on_an_avx512_host_emits_no_zmm(tmp_path):
    got = _asm_for(tmp_path, FLIGHT_KERNEL_ISA="avx2")
    assert got["path"] == "avx2"
    assert got["fma_ymm"] >= 10 and got["zmm"] == 0


@pytest.mark.skipif(not X86 or HOST == "generic", reason="needs an FMA host")
def test_forced_generic_path_has_no_fma(tmp_path):
    got = _asm_for(tmp_path, FLIGHT_KERNEL_ISA="generic")
    assert got["path"] == "generic"
    assert got["fma_zmm"] == got["fma_ymm"] == 0


# -- every path's tile, compiled for that path's CPU (aarch64 too) -----------------------------

_X86_SPILL = r"%[xyz]mm\d+.*\(%rsp\)|\(%rsp\).*%[xyz]mm\d+"
#: (triple, CPU, features, FMA instruction, its vector register marker, a vector stack access)
TARGETS = {
    "avx512": ("x86_64-unknown-linux-gnu", "skylake-avx512", "", "vfmadd", "%zmm", _X86_SPILL),
    "avx2": ("x86_64-unknown-linux-gnu", "haswell", "", "vfmadd", "%ymm", _X86_SPILL),
    "neon": (
        "aarch64-unknown-linux-gnu", "cortex-a72", "+neon", "fmla", ".4s",
        r"\b(str|ldr|stp|ldp)\s+q\d+.*\[sp",
    ),
}  # fmt: skip


def _tile_asm(name: str) -> str:
    """Machine code of a micro-kernel loop (kc steps of the tile update, then the store) built
    with path ``name``'s tile and compiled for that path's CPU by LLVM (numba's own llvmlite)."""
    import llvmlite.binding as llvm
    from llvmlite import ir

    from flight.kernels._ukernel import _Tile

    triple, cpu, features, *_ = TARGETS[name]
    path = isa.PATHS[name]
    f32p = ir.FloatType().as_pointer()
    i64 = ir.IntType(64)
    module = ir.Module(name=f"tile_{name}")
    module.triple = triple
    fn = ir.Function(
        module, ir.FunctionType(ir.VoidType(), [f32p, f32p, f32p, i64, i64]), name="tile"
    )
    a, b, c, kc, ldc = fn.args
    builder = ir.IRBuilder(fn.append_basic_block("entry"))
    tile = _Tile(builder, path)
    loop = fn.append_basic_block("loop")
    done = fn.append_basic_block("done")
    entry = builder.block
    builder.branch(loop)
    builder.position_at_end(loop)
    p = builder.phi(i64)
    p.add_incoming(ir.Constant(i64, 0), entry)
    tile.update(
        builder,
        builder.gep(a, [builder.mul(p, ir.Constant(i64, path.mr))]),
        builder.gep(b, [builder.mul(p, ir.Constant(i64, path.nr))]),
    )
    nxt = builder.add(p, ir.Constant(i64, 1))
    p.add_incoming(nxt, builder.block)
    builder.cbranch(builder.icmp_signed("<", nxt, kc), loop, done)
    builder.position_at_end(done)
    tile.store(builder, c, ldc, ir.Constant(i64, path.mr), ir.Constant(ir.IntType(1), 0))
    builder.ret_void()
    llvm.initialize_all_targets()
    llvm.initialize_all_asmprinters()
    parsed = llvm.parse_assembly(str(module))
    machine = llvm.Target.from_triple(triple).create_target_machine(
        cpu=cpu, features=features, opt=3
    )
    passes = llvm.create_pass_builder(machine, llvm.create_pipeline_tuning_options(speed_level=3))
    passes.getModulePassManager().run(parsed, passes)
    return machine.emit_assembly(parsed)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_each_path_tile_compiles_to_its_fma_in_registers(name):
    # aarch64 is compiled, never run: there is no aarch64 machine here (NEON is unmeasured)
    _triple, _cpu, _features, fma, register, stack = TARGETS[name]
    path = isa.PATHS[name]
    asm = _tile_asm(name)
    fmas = [line for line in asm.splitlines() if fma in line and register in line]
    per_step = path.mr * (path.nr // path.vw)  # one FMA per accumulator and k step
    assert fmas and len(fmas) % per_step == 0, "\n".join(fmas)
    spills = [line for line in asm.splitlines() if re.search(stack, line)]
    assert not spills, "tile spills to the stack:\n" + "\n".join(spills)


# -- FLIGHT_KERNEL_ISA through a real `flight run`, by its effect ------------------------------


def _flight_run(tmp_path: Path, isa_name: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_CPU", "FLIGHT_KERNEL"))}
    if isa_name is not None:
        env["FLIGHT_KERNEL_ISA"] = isa_name
    return subprocess.run(
        [sys.executable, "-m", "flight.cli", "run", "--frames", "3", "--fast", "--json",
         "--state-dir", str(tmp_path / "state")],
        env=env, capture_output=True, text=True, timeout=600, cwd="/",
    )  # fmt: skip


@pytest.mark.skipif(not X86 or HOST != "avx512", reason="needs an AVX-512 host to force AVX2")
def test_flight_run_reports_the_path_it_ran_on(tmp_path):
    default = _flight_run(tmp_path / "a", None)
    forced = _flight_run(tmp_path / "b", "avx2")
    for proc in (default, forced):
        assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(default.stdout)["kernel_path"] == "avx512"
    assert json.loads(forced.stdout)["kernel_path"] == "avx2"


@pytest.mark.skipif(not X86, reason="x86-64 paths")
def test_flight_run_refuses_an_unknown_path_in_one_line(tmp_path):
    proc = _flight_run(tmp_path, "avx9")
    assert proc.returncode == 78, proc.stdout + proc.stderr
    assert proc.stderr.startswith("flight: KernelPathError: FLIGHT_KERNEL_ISA='avx9'")
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
