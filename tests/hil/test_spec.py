"""The campaign spec: the issue's example loads as it stands, every key is checked and a bad one
is named, paths resolve in a fixed order, and the Leveugle sample size gives the figures the
design notes quote."""

from __future__ import annotations

import math
import pickle
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import flight
from flight.errors import ConfigError
from hil.campaign.spec import (
    CampaignSpec,
    SpecError,
    load_spec,
    parse_spec,
    sample_size,
)

# the installed package's data (what the spec falls back to), not the source tree's
DATA = Path(flight.__file__).resolve().parent / "data"

# issue 10, item 5, verbatim
ISSUE_EXAMPLE = """\
[campaign]
name = "weights-seu"
seed = 7
runs = 10000              # or: confidence = 0.95 and margin = 0.01
[target]
level = "model"           # or "board", with board = "spawn" or a URL
model = "flight/data/digits_cnn.flm"
inputs = "inputs.npy"     # optional: the inputs to cycle through (.npy or .npz); default: the
                          # dataset the model file names, else seeded random inputs
[fault]
model = "seu"             # seu | mbu | stuck-at | hang | crash
sites = ["weights", "activations", "outputs"]   # also "crc-tables", "cds", "process-memory"
[[arm]]
name = "none"
redundancy = "none"
[[arm]]
name = "tmr"
redundancy = "tmr"
"""

MINIMAL = """\
[campaign]
name = "c"
runs = 10
[target]
[fault]
[[arm]]
name = "a"
"""

BOARD = """\
[campaign]
name = "b"
runs = 5
[target]
level = "board"
[fault]
model = "crash"
[[arm]]
name = "tmr"
redundancy = "tmr"
"""


def test_the_issue_example_loads_as_it_stands_from_anywhere(tmp_path, monkeypatch):
    path = tmp_path / "weights.toml"
    path.write_text(ISSUE_EXAMPLE)
    monkeypatch.chdir(tmp_path)  # no flight/ here: the model comes from the installed data
    spec = load_spec(path)
    assert spec.name == "weights-seu" and spec.seed == 7 and spec.runs == 10000
    assert spec.target.level == "model"
    assert spec.target.model == (DATA / "digits_cnn.flm").resolve()
    assert spec.target.inputs == tmp_path / "inputs.npy"  # not there yet: checked before a run
    assert spec.fault.model == "seu"
    assert spec.fault.sites == ("weights", "activations", "outputs")
    assert [(a.name, a.redundancy) for a in spec.arms] == [("none", "none"), ("tmr", "tmr")]
    assert spec.batch == 64
    assert spec.runs_for("tmr", 10**9) == 10000
    assert spec.text == ISSUE_EXAMPLE
    assert len(spec.sha256) == 64
    assert pickle.loads(pickle.dumps(spec)) == spec
    with pytest.raises(SpecError, match="inputs: no such file"):
        spec.check_files()
    with pytest.raises(SpecError, match="inputs: no such file"):
        load_spec(path, check_files=True)
    (tmp_path / "inputs.npy").write_bytes(b"")
    load_spec(path, check_files=True)


def test_confidence_and_margin_give_the_leveugle_sample_size():
    text = ISSUE_EXAMPLE.replace("runs = 10000", "confidence = 0.95\nmargin = 0.01")
    spec = parse_spec(text)
    assert spec.runs is None and spec.margin == 0.01 and spec.confidence == 0.95
    assert spec.runs_for("none", math.inf) == 9604
    assert spec.runs_for("tmr", 1000) == sample_size(1000, 0.95, 0.01) < 1000
    with pytest.raises(KeyError, match="no arm 'dwc'"):
        spec.runs_for("dwc", 1000)


def test_sample_size_matches_the_figures_quoted_in_the_design_notes():
    # DESIGN.md / docs/radiation.md: 95 % / +-1 %, N -> inf, p = 0.5 -> 9,604 runs
    assert sample_size(math.inf, 0.95, 0.01) == 9604
    assert sample_size(10**15, 0.95, 0.01) == 9604
    # the finite-population formula by hand: N = 10,000 -> 4,899 (Leveugle's table)
    t = 1.959963984540054
    n = 10_000 * t * t * 0.25 / (0.0001 * 9_999 + t * t * 0.25)
    assert sample_size(10_000, 0.95, 0.01) == math.ceil(n) == 4900
    assert sample_size(10_000, 0.99, 0.01) > sample_size(10_000, 0.95, 0.01)
    assert sample_size(math.inf, 0.95, 0.01, p=0.1) < 9604
    assert sample_size(1, 0.95, 0.01) == 1
    for bad in ((0, 0.95, 0.01), (100, 1.0, 0.01), (100, 0.95, 0.0), (math.nan, 0.95, 0.01)):
        with pytest.raises(ValueError):
            sample_size(*bad)


@given(
    st.integers(1, 10**12),
    st.integers(1, 10**6),
    st.floats(0.5, 0.999),
    st.floats(0.001, 0.2),
    st.floats(0.01, 0.99),
)
def test_sample_size_is_monotone_and_bounded(n1, extra, confidence, margin, p):
    small = sample_size(n1, confidence, margin, p)
    assert 1 <= small <= n1
    assert sample_size(n1 + extra, confidence, margin, p) >= small  # more faults, more runs
    assert sample_size(n1, confidence, margin / 2, p) >= small  # narrower, more runs
    assert sample_size(n1, min(confidence + 0.0005, 0.9995), margin, p) >= small
    assert sample_size(math.inf, confidence, margin, p) >= sample_size(
        n1 + extra, confidence, margin, p
    )


def test_a_board_level_crash_spec_takes_its_defaults():
    spec = parse_spec(BOARD)
    t, f = spec.target, spec.fault
    assert (t.level, t.board, t.boards, t.partition, t.mission, t.key_file) == (
        "board", "spawn", 1, "classifier", None, None,
    )  # fmt: skip
    assert f.sites == ("partition",) and f.signals == ("SIGKILL",)
    assert spec.batch == 4


def test_paths_resolve_against_the_spec_dir_then_the_cwd_then_the_installed_data(
    tmp_path, monkeypatch
):
    spec_dir, cwd = tmp_path / "spec", tmp_path / "cwd"
    for d in (spec_dir, cwd):
        (d / "flight" / "data").mkdir(parents=True)
        shutil.copy(DATA / "digits_cnn.flm", d / "flight" / "data" / "digits_cnn.flm")
    monkeypatch.chdir(cwd)
    (spec_dir / "s.toml").write_text(ISSUE_EXAMPLE)
    model = Path("flight/data/digits_cnn.flm")
    assert load_spec(spec_dir / "s.toml").target.model == (spec_dir / model).resolve()
    (spec_dir / model).unlink()
    assert load_spec(spec_dir / "s.toml").target.model == (cwd / model).resolve()
    (cwd / model).unlink()
    assert load_spec(spec_dir / "s.toml").target.model == (DATA / "digits_cnn.flm").resolve()
    with pytest.raises(SpecError, match=r"\[target\] model: no such file 'nope.flm'"):
        parse_spec(ISSUE_EXAMPLE.replace("flight/data/digits_cnn.flm", "nope.flm"))


def _swap(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


EX = ISSUE_EXAMPLE

# (spec text, words the refusal must contain: the key is named)
REFUSED = [
    (_swap(EX, "seed = 7", "seed = 7\nsed = 1"), "unknown key 'sed' (did you mean 'seed'?)"),
    (EX + "[fautl]\n", "unknown table or key 'fautl' (did you mean [fault]?)"),
    (EX + "extra = 1\n", "[[arm]] #2: unknown key 'extra'"),
    (_swap(EX, 'level = "model"', 'level = "model"\nlevle = 1'), "[target]: unknown key 'levle'"),
    (_swap(EX, 'model = "seu"', 'model = "seu"\nbits = 2'), "[fault]: unknown key 'bits'"),
    (_swap(EX, 'name = "weights-seu"\n', ""), "[campaign] name: is required"),
    (_swap(EX, "[[arm]]\nname = \"none\"\nredundancy = \"none\"\n[[arm]]\nname = \"tmr\"\nredundancy = \"tmr\"\n", ""), "at least one [[arm]]"),  # noqa: E501
    (_swap(EX, "runs = 10000", "runs = 0"), "[campaign] runs: 0 is out of range"),
    (_swap(EX, "runs = 10000", "runs = 1.5"), "[campaign] runs: must be an integer"),
    (_swap(EX, "runs = 10000", "runs = true"), "[campaign] runs: must be an integer"),
    (_swap(EX, "seed = 7", "seed = -1"), "[campaign] seed: -1 is out of range"),
    (_swap(EX, "seed = 7", 'seed = "7"'), "[campaign] seed: must be an integer"),
    (_swap(EX, "runs = 10000", "confidence = 0.95"), "[campaign] margin: is required"),
    (_swap(EX, "runs = 10000", "margin = 0.01"), "[campaign] confidence: is required"),
    (_swap(EX, "runs = 10000", ""), "[campaign] confidence: is required"),
    (_swap(EX, "runs = 10000", "confidence = 1.0\nmargin = 0.01"), "confidence: 1.0 is out of range (0, 1)"),  # noqa: E501
    (_swap(EX, "runs = 10000", "confidence = 0.95\nmargin = 0"), "margin: 0 is out of range (0, 1)"),  # noqa: E501
    (_swap(EX, "runs = 10000", "confidence = 0.95\nmargin = nan"), "margin: nan is out of range"),
    (_swap(EX, "runs = 10000", "runs = 5\nconfidence = 0.9\nmargin = 0.01"), "[campaign] margin: given with runs"),  # noqa: E501
    (_swap(EX, "runs = 10000", "runs = 5\nconfidence = 0.9"), "[campaign] confidence: given with runs"),  # noqa: E501
    (_swap(EX, "runs = 10000", "runs = 5\np = 0.1"), "[campaign] p: only applies"),
    (_swap(EX, "runs = 10000", "runs = 5\nearly_stop = true"), "[campaign] early_stop: needs margin"),  # noqa: E501
    (_swap(EX, "runs = 10000", "runs = 5\nearly_stop = 1"), "early_stop: must be true or false"),
    (_swap(EX, "runs = 10000", "runs = 5\nbatch = 0"), "[campaign] batch: 0 is out of range"),
    (_swap(EX, 'level = "model"', 'level = "chip"'), "[target] level: must be one of model, board"),
    (_swap(EX, '"flight/data/digits_cnn.flm"', '"model.onnx"'), "[target] model: 'model.onnx': expected a .flm file"),  # noqa: E501
    (_swap(EX, '"inputs.npy"', '"inputs.csv"'), "[target] inputs: 'inputs.csv': expected a .npy or .npz"),  # noqa: E501
    (_swap(EX, 'level = "model"', 'level = "model"\nboard = "spawn"'), '[target] board: does not apply at level = "model"'),  # noqa: E501
    (_swap(EX, 'level = "model"', 'level = "model"\nboards = 2'), "[target] boards: does not apply"),  # noqa: E501
    (_swap(EX, 'model = "seu"', 'model = "bitrot"'), "[fault] model: must be one of"),
    (_swap(EX, 'model = "seu"', 'model = "hang"'), "[fault] model: 'hang' needs level = \"board\""),
    (_swap(EX, 'model = "seu"', 'model = "crash"'), "[fault] model: 'crash' needs level"),
    (_swap(EX, '"outputs"]', '"outputs", "cds"]'), "[fault] sites: 'cds' needs level = \"board\""),
    (_swap(EX, '"outputs"]', '"process-memory"]'), "[fault] sites: 'process-memory' needs level"),
    (_swap(EX, '"outputs"]', '"outputs", "l2-cache"]'), "[fault] sites: 'l2-cache' is not one of"),
    (_swap(EX, '"outputs"]', '"outputs", "weights"]'), "[fault] sites: lists 'weights' more than once"),  # noqa: E501
    (_swap(EX, 'sites = ["weights", "activations", "outputs"]', "sites = []"), "[fault] sites: must name at least one"),  # noqa: E501
    (_swap(EX, 'sites = ["weights", "activations", "outputs"]', 'sites = "weights"'), "[fault] sites: must be a list of strings"),  # noqa: E501
    (_swap(EX, 'model = "seu"', 'model = "seu"\nmbu_bits = 2'), "[fault] mbu_bits: does not apply to fault model 'seu'"),  # noqa: E501
    (_swap(EX, 'model = "seu"', 'model = "mbu"\nmbu_bits = 9'), "[fault] mbu_bits: 9 is out of range 2 .. 8"),  # noqa: E501
    (_swap(EX, 'model = "seu"', 'model = "seu"\nsignals = ["SIGKILL"]'), "[fault] signals: does not apply"),  # noqa: E501
    (_swap(EX, 'model = "seu"', 'model = "seu"\nprocess = "both"'), "[fault] process: does not apply without 'process-memory'"),  # noqa: E501
    (_swap(EX, 'name = "tmr"', 'name = "none"'), "[[arm]] #2 name: 'none' is used by another arm"),
    (_swap(EX, 'name = "tmr"', 'name = "t m r"'), "[[arm]] #2 name: 't m r': use"),
    (_swap(EX, 'redundancy = "tmr"', 'redundancy = "qmr"'), "[[arm]] #2 redundancy: must be one of tmr, dwc, none"),  # noqa: E501
    (_swap(EX, 'redundancy = "none"', 'redundancy = "none"\nvote_points = ["fc1"]'), '[[arm]] #1 vote_points: does not apply outside a model-level arm with redundancy = "tmr"'),  # noqa: E501
    (_swap(MINIMAL, "[[arm]]", "[arm]"), "arm must be an array of tables"),
    ("arm = []\n" + MINIMAL.replace("[[arm]]\nname = \"a\"\n", ""), "arm must be an array of tables"),  # noqa: E501
    (_swap(EX, "[target]", "target = 1\n[targe]"), "unknown table or key 'targe'"),
    (EX.replace("[target]\n", "[tgt]\n"), "unknown table or key 'tgt'"),
    ("[campaign\n", "invalid TOML"),
    (_swap(EX, '"inputs.npy"', '"in\\u0000puts.npy"'), "[target] inputs: 'in\\x00puts.npy': a path cannot contain a NUL"),  # noqa: E501
    (_swap(EX, '"inputs.npy"', '"~no-such-user-hilcore/in.npy"'), "[target] inputs: '~no-such-user-hilcore/in.npy': "),  # noqa: E501
    (_swap(EX, '"flight/data/digits_cnn.flm"', '"' + "m" * 5000 + '.flm"'), "[target] model: 'mmmm"),  # noqa: E501
]  # fmt: skip

BOARD_REFUSED = [
    (_swap(BOARD, 'model = "crash"', 'model = "crash"\nsites = ["weights"]'), "[fault] sites: 'weights' is not one of partition"),  # noqa: E501
    (_swap(BOARD, 'model = "crash"', 'model = "crash"\nsignals = ["SIGTERM"]'), "[fault] signals: 'SIGTERM' is not one of SIGKILL, SIGSEGV"),  # noqa: E501
    (_swap(BOARD, 'model = "crash"', 'model = "crash"\nsignals = []'), "[fault] signals: must name at least one"),  # noqa: E501
    (_swap(BOARD, 'model = "crash"', 'model = "hang"\nsignals = ["SIGKILL"]'), "[fault] signals: does not apply to fault model 'hang'"),  # noqa: E501
    (_swap(BOARD, 'model = "crash"', 'model = "stuck-at"\nsites = ["process-memory"]'), "[fault] sites: 'process-memory' takes bit flips"),  # noqa: E501
    (_swap(BOARD, 'model = "crash"', 'model = "seu"\nsites = ["process-memory"]\nprocess = "kernel"'), "[fault] process: must be one of partition, supervisor, both"),  # noqa: E501
    (_swap(BOARD, 'level = "board"', 'level = "board"\nboard = "ftp://x:1"'), '[target] board: must be "spawn" or a link URL'),  # noqa: E501
    (_swap(BOARD, 'level = "board"', 'level = "board"\nboard = "udp://127.0.0.1:5000"\nboards = 2'), "[target] boards: does not apply with a board URL"),  # noqa: E501
    (_swap(BOARD, 'level = "board"', 'level = "board"\nkey_file = "k"'), '[target] key_file: does not apply with board = "spawn"'),  # noqa: E501
    (_swap(BOARD, 'level = "board"', 'level = "board"\nboard = "udp://["'), '[target] board: must be "spawn" or a link URL'),  # noqa: E501
    (_swap(BOARD, 'level = "board"', 'level = "board"\nboards = 0'), "[target] boards: 0 is out of range 1 .. 64"),  # noqa: E501
    (_swap(BOARD, 'level = "board"', 'level = "board"\nmission = "nope.toml"'), "[target] mission: no such file"),  # noqa: E501
    (_swap(BOARD, 'level = "board"', 'level = "board"\npartition = ""'), "[target] partition: must not be empty"),  # noqa: E501
    (_swap(BOARD, 'redundancy = "tmr"', 'redundancy = "tmr"\nvote_points = ["fc1"]'), "vote_points: does not apply"),  # noqa: E501
]  # fmt: skip


@pytest.mark.parametrize(("text", "words"), REFUSED + BOARD_REFUSED)
def test_a_bad_spec_is_refused_naming_the_key(text, words):
    with pytest.raises(SpecError) as info:
        parse_spec(text, "bad.toml")
    assert words in str(info.value)
    assert str(info.value).startswith("bad.toml: ")
    assert isinstance(info.value, ConfigError)


def test_every_board_key_is_accepted_where_it_applies(tmp_path):
    mission = tmp_path / "m.toml"
    mission.write_text("")
    key = tmp_path / "key"
    key.write_text("")
    spawn = parse_spec(
        _swap(
            BOARD,
            'level = "board"',
            f'level = "board"\nboard = "spawn"\nboards = 3\nmission = "{mission}"\n'
            'partition = "vision"',
        ).replace('model = "crash"', 'model = "crash"\nsignals = ["SIGKILL", "SIGSEGV"]')
    )
    assert (spawn.target.boards, spawn.target.mission, spawn.target.partition) == (
        3, mission, "vision",
    )  # fmt: skip
    assert spawn.fault.signals == ("SIGKILL", "SIGSEGV")
    remote = parse_spec(
        _swap(
            BOARD,
            'level = "board"',
            f'level = "board"\nboard = "tcp://10.0.0.2:7000"\nkey_file = "{key}"',
        )
    )
    assert (remote.target.board, remote.target.key_file) == ("tcp://10.0.0.2:7000", key)
    mem = parse_spec(
        _swap(BOARD, 'model = "crash"',
              'model = "mbu"\nmbu_bits = 3\nsites = ["process-memory", "cds"]\nprocess = "both"')
    )  # fmt: skip
    assert (mem.fault.mbu_bits, mem.fault.sites, mem.fault.process) == (
        3, ("process-memory", "cds"), "both",
    )  # fmt: skip
    tmr = parse_spec(_swap(EX, 'redundancy = "tmr"', 'redundancy = "tmr"\nvote_points = ["fc1"]'))
    assert tmr.arm("tmr").vote_points == ("fc1",)
    stop = parse_spec(_swap(EX, "runs = 10000", "runs = 500\nearly_stop = true\nmargin = 0.05"))
    assert (stop.runs, stop.margin, stop.early_stop, stop.confidence) == (500, 0.05, True, 0.95)


def test_a_spec_file_that_cannot_be_read_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "missing.toml")
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe[campaign]")
    with pytest.raises(SpecError, match="not UTF-8"):
        load_spec(tmp_path / "bin.toml")


# ---- property tests ---------------------------------------------------------------------------

NAMES = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,20}\Z")
FRACTIONS = st.floats(0.001, 0.999)


@st.composite
def valid_specs(draw) -> CampaignSpec:
    """A random valid spec, built through its own TOML so every combination is one parse_spec
    accepts."""
    level = draw(st.sampled_from(["model", "board"]))
    name = draw(st.text(min_size=1, max_size=20).filter(str.strip))
    lines = ["[campaign]", f"name = {_toml_value(name)}"]
    lines.append(f"seed = {draw(st.integers(0, 2**63 - 1))}")
    mode = draw(st.sampled_from(["runs", "confidence", "early"]))
    if mode in ("runs", "early"):
        lines.append(f"runs = {draw(st.integers(1, 10**9))}")
    if mode in ("confidence", "early"):
        lines += [f"confidence = {draw(FRACTIONS)!r}", f"margin = {draw(FRACTIONS)!r}"]
    if mode == "confidence" and draw(st.booleans()):
        lines.append(f"p = {draw(FRACTIONS)!r}")
    lines.append(f"early_stop = {'true' if mode == 'early' else 'false'}")
    if draw(st.booleans()):
        lines.append(f"batch = {draw(st.integers(1, 100_000))}")
    lines += ["[target]", f'level = "{level}"']
    if draw(st.booleans()):
        lines.append(f'inputs = "{draw(st.sampled_from(["a.npy", "sub/b.npz"]))}"')
    if level == "board":
        board = draw(st.sampled_from(["spawn", "udp://127.0.0.1:4000", "tcp://[::1]:7"]))
        lines.append(f'board = "{board}"')
        lines.append(f'partition = "{draw(NAMES)}"')
        if board == "spawn":
            lines.append(f"boards = {draw(st.integers(1, 64))}")
    fault = draw(
        st.sampled_from(["seu", "mbu", "stuck-at"] + (["hang", "crash"] * (level == "board")))
    )
    lines += ["[fault]", f'model = "{fault}"']
    if fault in ("hang", "crash"):
        sites = ["partition"]
    else:
        pool = ["weights", "activations", "outputs", "crc-tables"]
        if level == "board":
            pool += ["cds"] + (["process-memory"] if fault != "stuck-at" else [])
        sites = draw(st.lists(st.sampled_from(pool), min_size=1, unique=True))
    lines.append("sites = [" + ", ".join(f'"{s}"' for s in sites) + "]")
    if fault == "mbu":
        lines.append(f"mbu_bits = {draw(st.integers(2, 8))}")
    if fault == "crash":
        signals = draw(st.lists(st.sampled_from(["SIGKILL", "SIGSEGV"]), min_size=1, unique=True))
        lines.append("signals = [" + ", ".join(f'"{s}"' for s in signals) + "]")
    if "process-memory" in sites:
        lines.append(f'process = "{draw(st.sampled_from(["partition", "supervisor", "both"]))}"')
    for name in draw(st.lists(NAMES, min_size=1, max_size=4, unique=True)):
        redundancy = draw(st.sampled_from(["none", "dwc", "tmr"]))
        lines += ["[[arm]]", f'name = "{name}"', f'redundancy = "{redundancy}"']
        if level == "model" and redundancy == "tmr" and draw(st.booleans()):
            points = draw(st.lists(NAMES, max_size=3, unique=True))
            lines.append("vote_points = [" + ", ".join(f'"{p}"' for p in points) + "]")
    return parse_spec("\n".join(lines) + "\n", "random.toml", Path("/nonexistent-spec-dir"))


def _same(a: CampaignSpec, b: CampaignSpec) -> bool:
    return a.__dict__ | {"text": "", "sha256": "", "source": ""} == b.__dict__ | {
        "text": "", "sha256": "", "source": "",
    }  # fmt: skip


@given(valid_specs())
def test_a_random_valid_spec_round_trips_through_toml_and_pickle(spec):
    again = parse_spec(spec.to_toml(), "again.toml")
    assert _same(again, spec)
    assert pickle.loads(pickle.dumps(spec)) == spec
    assert again.sha256 != spec.sha256 or again.text == spec.text


# random TOML documents over the real section and key names (and a few others), with values of
# every TOML type: whatever comes out, parse_spec returns a spec or raises SpecError
KEYS = [
    "name", "seed", "runs", "confidence", "margin", "p", "early_stop", "batch", "level", "model",
    "inputs", "board", "boards", "mission", "key_file", "partition", "sites", "mbu_bits",
    "signals", "process", "redundancy", "vote_points", "bogus",
]  # fmt: skip
SCALARS = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=12),
    st.sampled_from(["model", "board", "spawn", "seu", "hang", "crash", "tmr", "weights", "cds",
                     "process-memory", "partition", "udp://127.0.0.1:1", "digits_cnn.flm",
                     "udp://[", "~no-such-user-hilcore/x.flm", "a\x00.toml", "x" * 300 + ".npy"]),
)  # fmt: skip
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=4))


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return (
            "nan"
            if math.isnan(v)
            else ("inf" if v == math.inf else "-inf" if v < -1e308 else repr(v))
        )
    if isinstance(v, str):
        return '"' + "".join(_toml_char(c) for c in v) + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return str(v)


def _toml_char(c: str) -> str:
    if c.isascii() and (c.isalnum() or c in " .:/-_"):
        return c
    return f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}"


TABLES = st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=6)


@given(
    st.dictionaries(st.sampled_from(["campaign", "target", "fault", "tgt"]), TABLES, max_size=4),
    st.lists(TABLES, max_size=3),
)
def test_random_toml_gives_a_spec_or_a_spec_error_only(tables, arms):
    lines = []
    for name, table in tables.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in table.items()]
    for arm in arms:
        lines.append("[[arm]]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in arm.items()]
    try:
        spec = parse_spec("\n".join(lines) + "\n", "random.toml")
    except SpecError:
        return
    assert isinstance(spec, CampaignSpec)


@given(st.text(max_size=200))
def test_random_text_gives_a_spec_error_only(text):
    with pytest.raises(SpecError):
        parse_spec(text, "garbage.toml")
