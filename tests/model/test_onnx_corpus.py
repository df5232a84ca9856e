"""The onnx package's own test corpus through the converter (tools/onnx_corpus.py).

The acceptance rule of issue 11: each model matches onnxruntime (and its stored outputs) or is
refused naming the op or limit. Models that end in ``error`` or ``mismatch`` today are listed in
KNOWN_FAILURES with the reason, as strict xfails, so a fix shows up; any other model ending there
fails the test. The committed coverage table in docs/models.md must be what the tool produces.
The fast suites run here; the light model-zoo networks are ``slow``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import onnx_corpus as corpus  # noqa: E402

DOCS = ROOT / "docs" / "models.md"

KNOWN_FAILURES: dict[tuple[str, str], str] = {}
BAD = ("error", "mismatch")


@pytest.fixture(scope="module")
def fast_results() -> dict[tuple[str, str], corpus.Result]:
    results = corpus.run(corpus.FAST_SUITES, time_limit=None)
    return {(r.suite, r.model): r for r in results}


def _committed_rows(suites: tuple[str, ...]) -> list[str]:
    section = corpus.read_section(DOCS)
    return [line for line in section.splitlines() if line.split(" | ")[0][2:] in suites]


def _rows(results: list[corpus.Result], suites: tuple[str, ...]) -> list[str]:
    return [
        line for line in corpus.markdown(results).splitlines() if line.split(" | ")[0][2:] in suites
    ]


def _assert_only_known_failures(results: dict[tuple[str, str], corpus.Result]) -> None:
    bad = {key: r for key, r in results.items() if r.result in BAD and key not in KNOWN_FAILURES}
    assert not bad, "\n".join(f"{k}: {r.result}: {r.detail}" for k, r in bad.items())


def test_fast_suites_match_or_refuse(fast_results) -> None:
    _assert_only_known_failures(fast_results)
    refused = [r for r in fast_results.values() if r.result == "refused"]
    assert refused and all(r.detail for r in refused)  # a refusal names the op or the limit


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(key, marks=pytest.mark.xfail(strict=True, reason=reason), id="/".join(key))
        for key, reason in KNOWN_FAILURES.items()
        if key[0] in corpus.FAST_SUITES
    ],
)
def test_known_failure(fast_results, key) -> None:
    assert fast_results[key].result not in BAD, fast_results[key].detail


@pytest.mark.parametrize(
    "prefix",
    [
        *("Conv1d", "MaxPool1d", "AvgPool1d", "ConstantPad2d", "ReflectionPad2d", "ZeroPad2d"),
        *("Embedding", "Conv3d", "MaxPool3d", "AvgPool3d"),
    ],
)
def test_issue_models_match(fast_results, prefix: str) -> None:
    """The pytorch-converted models issue 11 names: 1-D Conv and pooling, upgraded Pad; and
    Embedding (an int64 input as Gather indices) and 3-D Conv and pooling."""
    rows = [
        r for (s, m), r in fast_results.items() if s == "pytorch-converted" and m.startswith(prefix)
    ]
    assert rows and all(r.result == "match" for r in rows), [(r.model, r.result) for r in rows]


def test_committed_table_is_current_for_fast_suites(fast_results) -> None:
    suites = corpus.FAST_SUITES
    assert _committed_rows(suites) == _rows(list(fast_results.values()), suites)


@pytest.mark.slow
def test_light_models() -> None:
    results = corpus.run(("light",), time_limit=None)
    _assert_only_known_failures({(r.suite, r.model): r for r in results})
    assert _committed_rows(("light",)) == _rows(results, ("light",))


@pytest.mark.slow
def test_all_nine_light_models_match_with_raised_limits() -> None:
    """Issue 11: AlexNet, VGG-19 and ZFNet-512 too, once the .flm limits are raised (--big)."""
    results = corpus.run(("light",), big=True, time_limit=None)
    assert len(results) == 9
    assert all(r.result == "match" for r in results), [(r.model, r.detail) for r in results]


# --- the classifier itself, on tiny models ------------------------------------------------------
def _tiny(op: str) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node(op, ["x"], ["y"], name="n")],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _case(op: str, stored: np.ndarray) -> corpus.Case:
    x = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    return corpus.Case("t", op, lambda: (_tiny(op), {"x": x}, [stored]), 0)


def test_classifier(tmp_path) -> None:
    x = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    assert corpus.run_case(_case("Relu", np.maximum(x, 0)), tmp_path) == ("match", "")
    result, detail = corpus.run_case(_case("Relu", np.maximum(x, 0) + 1e-3), tmp_path)
    assert result == "mismatch" and "vs stored" in detail
    assert corpus.run_case(_case("Exp", np.exp(x)), tmp_path) == ("refused", "Exp")


def test_node_gather_indices_are_fed_as_integers_other_integer_inputs_folded() -> None:
    """Gather's int64 indices stay a graph input fed at run time (the Embedding path); other
    non-float inputs (Reshape's shape, ...) become constants, as an exporter writes them."""
    by_name = {c.name: c for c in corpus.cases(("node",))}
    model, feeds, _ = by_name["gather_1"].load()
    assert feeds["indices"].dtype == np.int64 and "indices" in {v.name for v in model.graph.input}
    model, feeds, _ = by_name["reshape_extended_dims"].load()
    assert list(feeds) == ["data"] and "shape" in {t.name for t in model.graph.initializer}


def test_write_section_replaces_only_between_markers(tmp_path) -> None:
    doc = tmp_path / "m.md"
    doc.write_text(f"head\n{corpus.BEGIN}\nold\n{corpus.END}\ntail\n")
    corpus.write_section(doc, "new\n")
    assert doc.read_text() == f"head\n{corpus.BEGIN}\nnew\n{corpus.END}\ntail\n"
    assert corpus.read_section(doc) == "new\n"
