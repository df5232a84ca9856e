"""The ``flight`` command line.

Subcommands import what they need when they run, so ``flight --help`` stays fast on a board.

Exit codes (docs/operations.md, "Exit codes"): 0 success; 1 an internal error (a bug: its
traceback is kept) or a failed selftest; 2 a command-line usage error (argparse); 3 ``model
run`` withheld some outputs; 65 (``EX_DATAERR``) a model file that fails its checks in ``model
info``, or an input that does not fit the model in ``model run``; 70, 71, 72 the supervisor's
processor-reset requests (:class:`flight.recovery.ExitCode`); 74 (``EX_IOERR``) an I/O error;
75 (``EX_TEMPFAIL``) the state directory is in use by another supervisor; 78 (``EX_CONFIG``)
invalid input: the mission, a model, dataset or file it names, an ONNX file, the installation
(native extension, crcmod) or the numba cache location; 124 the software watchdog expired.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from flight import __version__
from flight.cli_link import add_link_parser
from flight.environments import ENVIRONMENTS
from flight.modes import MODES

#: The flight errors that are not bugs, by module and class name, with their exit status. The
#: input errors (the mission, a file it names, an argument, the installation: running again
#: unchanged fails the same way) exit ``os.EX_CONFIG`` (78, ``recovery.ExitCode.CONFIG``, which
#: systemd does not restart); a state directory held by a live supervisor exits
#: ``os.EX_TEMPFAIL`` (75: it frees when that one stops). Every other flight error is a broken
#: invariant (a bug) and keeps its traceback. By name, so that building the parser imports none
#: of these modules: an exception can only be an instance of a class whose module is imported.
ERROR_EXIT_CODES: tuple[tuple[str, str, int], ...] = (
    ("flight.errors", "ConfigError", os.EX_CONFIG),
    ("flight.errors", "NativeBuildError", os.EX_CONFIG),
    ("flight.errors", "CrcExtensionMissingError", os.EX_CONFIG),
    ("flight.jitcache", "JitCacheError", os.EX_CONFIG),
    ("flight.model.format", "ModelFormatError", os.EX_CONFIG),
    ("flight.model.shapes", "ShapeError", os.EX_CONFIG),
    ("flight.model.executor", "ModelError", os.EX_CONFIG),
    ("flight.model.onnx_import", "ConversionError", os.EX_CONFIG),
    ("flight.cds", "CdsBusyError", os.EX_TEMPFAIL),
)

#: A file named on the command line or in the mission is missing or not accessible: input too.
_PATH_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def _cmd_selftest(args: argparse.Namespace) -> int:
    from flight.selftest import run_selftest

    result = run_selftest(seed=args.seed, region_mib=args.region_mib, upsets=args.upsets)
    if args.json:
        print(json.dumps({"ok": result.ok, "checks": result.checks, "facts": result.facts}))
    else:
        for name, passed in result.checks.items():
            print(f"  {'PASS' if passed else 'FAIL'}  {name}")
        for name, value in result.facts.items():
            print(f"        {name}: {value}")
        print("selftest:", "all checks passed" if result.ok else "FAILED")
    return 0 if result.ok else 1


def _shape_arg(text: str) -> tuple[str, tuple[int, ...]]:
    try:
        name, dims = text.split("=", 1)
        return name, tuple(int(d) for d in dims.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected NAME=D1,D2,... (e.g. input=1,3,224,224)"
        ) from None


def _limits(args: argparse.Namespace):
    """``--max-model-bytes``: the byte limits raised for a large model (None: the defaults)."""
    from flight.model import format as flm

    n = getattr(args, "max_model_bytes", None)
    return None if n is None else flm.Limits.for_model_bytes(n)


def _cmd_model_convert(args: argparse.Namespace) -> int:
    from flight.model import format as flm
    from flight.model import io
    from flight.model.onnx_import import convert_onnx

    limits = _limits(args)
    graph = convert_onnx(
        args.onnx,
        dict(args.input_shape or []),
        fold_batchnorm=not args.no_fold_batchnorm,
        fuse_activations=not args.no_fuse_activations,
        limits=limits,
    )
    io.save(
        graph,
        args.output,
        producer=f"flight {__version__} (from {args.onnx})",
        limits=limits or flm.DEFAULT_LIMITS,
    )
    ops = ", ".join(f"{op} x{n}" for op, n in sorted(graph.ops().items()))
    print(
        f"wrote {args.output}: {len(graph.nodes)} nodes ({ops}), "
        f"{graph.parameter_count():,} parameters"
    )
    return 0


def _cmd_model_info(args: argparse.Namespace) -> int:
    from flight import errors
    from flight.model import format as flm
    from flight.model import io

    try:
        model_file = flm.load(args.model, limits=_limits(args) or flm.DEFAULT_LIMITS)
    except flm.ModelFormatError as exc:
        result = {"file": args.model, "crc": "FAILED", "error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(result) if args.json else f"{args.model}: {result['error']}")
        return os.EX_DATAERR
    summary = {
        "file": args.model,
        "crc": f"ok (file and {len(model_file.tensors)} tensors)",
        **flm.info(model_file),
    }
    try:  # plan the file already read and checked; do not read it again
        from flight.model.executor import Model

        model = Model(io.from_model_file(model_file), copies=1)
        summary["memory_plan"] = model.summary()
    except errors.FlightError as exc:  # a valid file flight cannot run: say why, do not crash
        summary["memory_plan"] = f"cannot plan: {type(exc).__name__}: {exc}"
    if args.json:
        print(json.dumps(summary, default=str, indent=2))
        return 0
    from flight.cli_render import render_summary

    print(render_summary(summary, title=f"model {args.model}"))
    return 0


def _cmd_model_run(args: argparse.Namespace) -> int:
    import numpy as np

    from flight.model import io
    from flight.model.format import DEFAULT_LIMITS
    from flight.modes import REPLICAS
    from flight.redundancy import RedundantRunner

    model = io.load(
        args.model, copies=REPLICAS[args.redundancy], limits=_limits(args) or DEFAULT_LIMITS
    )
    runner = RedundantRunner(model, args.redundancy)
    try:
        x = np.load(args.input)
    except (ValueError, EOFError) as exc:  # not a .npy (or a pickle, which is refused)
        print(f"flight: {args.input}: not a readable .npy array ({exc})", file=sys.stderr)
        return os.EX_DATAERR
    in_shape = model.shapes[model.input_names[0]]
    if tuple(x.shape) == tuple(in_shape):
        samples = [x]
    elif in_shape[0] == 1 and tuple(x.shape[1:]) == tuple(in_shape[1:]):
        samples = [x[i : i + 1] for i in range(x.shape[0])]
    else:
        print(f"input shape {x.shape} does not fit the model's {tuple(in_shape)}", file=sys.stderr)
        return os.EX_DATAERR
    # float inputs are cast; integer inputs (Gather indices) go as they are: the executor checks
    # their kind and range (a float array for them is refused there, exit 78)
    integer_input = model.input_dtypes[model.input_names[0]] != "float32"
    outputs, withheld, corrected = [], 0, 0
    for sample in samples:
        result = runner.run(sample if integer_input else sample.astype(np.float32, copy=False))
        corrected += int(result.corrected > 0)
        if result.delivered:
            outputs.append(result.output)
        else:
            withheld += 1
            outputs.append(np.full(model.shapes[runner.output_name], np.nan, np.float32))
    y = outputs[0] if len(samples) == 1 and x.shape == tuple(in_shape) else np.concatenate(outputs)
    np.save(args.output, y)
    print(
        json.dumps(
            {
                "samples": len(samples),
                "redundancy": args.redundancy,
                "withheld": withheld,
                "corrected": corrected,
                "output": args.output,
            }
        )
    )
    return 0 if withheld == 0 else 3


def _cmd_cache_build(args: argparse.Namespace) -> int:
    import time

    os.environ["NUMBA_CACHE_DIR"] = os.path.abspath(args.directory)
    from flight.model.warmup import warm_up

    started = time.perf_counter()
    print(f"flight cache build: compiling every kernel into {args.directory}", flush=True)

    def progress(model: str, replica: int, replicas: int) -> None:
        elapsed = time.perf_counter() - started
        print(f"  {model}: replica {replica}/{replicas} compiled ({elapsed:.1f} s)", flush=True)

    models = warm_up(progress=progress)
    files = [p for p in Path(args.directory).rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    print(
        f"compiled every kernel for {', '.join(models)} in "
        f"{time.perf_counter() - started:.1f} s: {len(files)} files, {size / 1e6:.1f} MB "
        f"in {args.directory}"
    )
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    """The main job: the bundled default mission (or --mission FILE) under the supervisor."""
    from flight.mission import default_mission, load_mission
    from flight.supervisor import Supervisor

    mission = load_mission(args.mission) if args.mission else default_mission()
    if args.environment and not mission.test_mode and not args.mission:
        # the bundled demo mission is switched into test mode for simulated radiation; a
        # mission file must say test_mode = true itself (the library refuses otherwise: 78)
        mission = mission.with_test_mode()
    if not args.json:
        parts = ", ".join(f"{p.name} {p.redundancy}/{p.placement}" for p in mission.partitions)
        env = f", radiation {args.environment} x{args.accelerate:g}" if args.environment else ""
        print(f"flight run: mission {mission.name!r} ({parts}{env}): starting", flush=True)
    url = args.link or mission.link.url
    transport = None
    if url:
        from flight.link.transport import open_board_transport

        transport = open_board_transport(url)
        if not args.json:
            print(f"flight run: link {url} (bound {transport.address})", flush=True)
    tm_file = open(args.tm_file, "wb") if args.tm_file else None  # noqa: SIM115 (run-long)
    supervisor = Supervisor(
        mission,
        environment=args.environment,
        accelerate=args.accelerate,
        realtime=not args.fast,
        cds_directory=args.state_dir,
        fresh_recovery=args.reset_recovery,
        compute_window_s=args.compute_window_ms / 1000.0,
        link_transport=transport,
        tm_file=tm_file,
    )
    frames = args.frames
    if frames is None and args.duration is None and not args.forever:
        frames = 400

    def request_stop(signum, frame) -> None:
        """systemd stop, Ctrl-C: a clean shutdown, also during the cold start (model loading
        and kernel compilation run inside ``supervisor.run``, after this is installed)."""
        supervisor.request_stop()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    progress = None if args.json else _progress_printer(frames, args.duration)
    summary = supervisor.run(frames=frames, duration=args.duration, progress=progress)
    if args.json:
        print(json.dumps(summary, default=str))
    else:
        _print_summary(summary)
    return int(summary.get("exit_code") or 0)


def _progress_printer(frames: int | None, duration: float | None):
    """Live progress: one rewritten line on a terminal, a plain line every second otherwise."""
    import time

    tty = sys.stdout.isatty()
    last = [0.0]

    def show(report, supervisor) -> None:
        now = time.monotonic()
        faults = "; ".join(report.faults)
        if not tty and not faults and now - last[0] < 1.0:
            return
        last[0] = now
        s = supervisor.summary(brief=True)
        accuracy = "-" if s["accuracy"] is None else f"{100 * s['accuracy']:.1f}%"
        total = f"/{frames}" if frames else ""
        line = (
            f"frame {s['frames']}{total}  acc {accuracy}  delivered {s['delivered']}  "
            f"corrected {s['corrected']}  withheld {s['withheld']}  "
            f"scrub repairs {s['scrub_repairs']}  restarts {s['restarts']}"
        )
        if s["sdc"] is not None:
            line += f"  sdc {s['sdc']}"
        if tty:
            sys.stdout.write("\r\x1b[K" + line)
            if faults:
                sys.stdout.write(f"\n  fault: {faults}\n")
        else:
            sys.stdout.write(line + (f"  fault: {faults}" if faults else "") + "\n")
        sys.stdout.flush()

    return show


def _print_summary(summary: dict) -> None:
    from flight.cli_render import render_summary

    print()
    print(render_summary(summary))


def _max_model_bytes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-model-bytes",
        type=int,
        metavar="N",
        help="accept a model (file, one tensor, all tensors) of up to N bytes (default limits: "
        "256 MiB per file, 128 MiB per tensor); the mission's max_model_bytes does the same",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flight",
        description="Radiation-tolerant onboard inference runtime (TMR, scrubbing, recovery).",
    )
    parser.add_argument("--version", action="version", version=f"flight {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser(
        "run", help="run the bundled default mission (or --mission FILE) under the supervisor"
    )
    run.add_argument("--mission", help="mission TOML (default: the bundled demo mission)")
    run.add_argument("--frames", type=int, help="minor frames to run (default 400)")
    run.add_argument("--duration", type=float, help="seconds to run")
    run.add_argument(
        "--forever", action="store_true", help="run until SIGTERM/SIGINT (a board's service)"
    )
    run.add_argument(
        "--environment",
        choices=list(ENVIRONMENTS),
        help="simulated radiation (test mode): upsets in weights and activations",
    )
    run.add_argument(
        "--accelerate",
        type=float,
        default=1.0,
        help="multiply the environment's upset rate (e.g. 1e6)",
    )
    run.add_argument(
        "--fast",
        action="store_true",
        help="do not pace frames in real time (run as fast as possible)",
    )
    run.add_argument(
        "--compute-window-ms",
        type=float,
        default=2.0,
        help="simulated radiation: the part of each frame in which weights and live "
        "activations are exposed during compute (default 2 ms; fixed, so runs replay)",
    )
    run.add_argument("--state-dir", help="directory of the critical data store")
    run.add_argument(
        "--reset-recovery",
        action="store_true",
        help="start with fresh restart budgets and full redundancy (ground "
        "command); by default the recovery state survives restarts",
    )
    run.add_argument(
        "--link",
        metavar="URL",
        help="the space link: udp://HOST:PORT, tcp://HOST:PORT or serial:///dev/ttyX?baud=N "
        "(default: the mission's [link] url; none: no link)",
    )
    run.add_argument(
        "--tm-file",
        metavar="PATH",
        help="also write every telemetry packet the run emits, back to back (hil link replay)",
    )
    run.add_argument("--json", action="store_true", help="machine-readable summary on stdout")
    run.set_defaults(func=_cmd_run)

    selftest = sub.add_parser(
        "selftest", help="check the native voter, CRCs and scrubber against injected upsets"
    )
    selftest.add_argument("--seed", type=int, default=0, help="seed of the injected upsets")
    selftest.add_argument("--region-mib", type=int, default=8, help="size of the test region")
    selftest.add_argument("--upsets", type=int, default=64, help="blocks to hit with a bit flip")
    selftest.add_argument("--json", action="store_true", help="machine-readable result")
    selftest.set_defaults(func=_cmd_selftest)

    model = sub.add_parser("model", help="convert, inspect and run models")
    model_sub = model.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    convert = model_sub.add_parser("convert", help="ONNX in, flight model (.flm) out")
    convert.add_argument("onnx", help="the ONNX model")
    convert.add_argument("-o", "--output", required=True, help="the .flm file to write")
    convert.add_argument(
        "--input-shape",
        type=_shape_arg,
        action="append",
        metavar="NAME=D1,D2,...",
        help="static shape of an input (repeatable)",
    )
    convert.add_argument("--no-fold-batchnorm", action="store_true")
    _max_model_bytes(convert)
    convert.add_argument("--no-fuse-activations", action="store_true")
    convert.set_defaults(func=_cmd_model_convert)
    info = model_sub.add_parser("info", help="graph summary, parameters, memory plan, CRCs")
    info.add_argument("model")
    info.add_argument("--json", action="store_true")
    _max_model_bytes(info)
    info.set_defaults(func=_cmd_model_info)
    run = model_sub.add_parser("run", help="run a model on a .npy input")
    run.add_argument("model")
    run.add_argument("--input", required=True, help=".npy: one input, or a batch of samples")
    run.add_argument("--output", required=True, help=".npy to write")
    run.add_argument("--redundancy", choices=MODES, default="tmr")
    _max_model_bytes(run)
    run.set_defaults(func=_cmd_model_run)

    cache = sub.add_parser("cache", help="numba kernel cache for read-only images")
    cache_sub = cache.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    build = cache_sub.add_parser("build", help="precompile every kernel into DIR")
    build.add_argument("directory")
    build.set_defaults(func=_cmd_cache_build)
    add_link_parser(sub)
    return parser


def exit_code_for(exc: BaseException) -> int | None:
    """The exit status of a flight error that is not a bug (:data:`ERROR_EXIT_CODES`), or None."""
    for module_name, class_name, code in ERROR_EXIT_CODES:
        module = sys.modules.get(module_name)
        if module is not None and isinstance(exc, getattr(module, class_name)):
            return code
    return None


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv, "flight")


def run_command(parser: argparse.ArgumentParser, argv: list[str] | None, prog: str) -> int:
    """Parse ``argv`` and run the chosen command, turning input errors into one line and their
    exit code (``flight`` and ``hil`` alike); bugs keep their traceback."""
    from flight import errors

    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except errors.FlightError as exc:
        code = exit_code_for(exc)
        if code is None:
            raise  # a broken invariant (a bug): keep the traceback, exit status 1
        print(f"{prog}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return code
    except BrokenPipeError:  # e.g. `flight ... | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        return 130
    except _PATH_ERRORS as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return os.EX_CONFIG
    except OSError as exc:  # e.g. a full or failing disk: may pass, so the init system retries
        print(f"{prog}: {exc}", file=sys.stderr)
        return os.EX_IOERR


if __name__ == "__main__":
    sys.exit(main())
