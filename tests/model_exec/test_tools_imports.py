"""tools/ never imports tests/: what both need (the ONNX model builders) lives in tools/, and the
tests reach it through their conftest. A static check, so it needs neither onnx nor a run."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEST_MODULES = {p.stem for p in (ROOT / "tests").rglob("*.py")} - {"__init__"}


def _violations(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names = []
            if node.value == "tests" or node.value.startswith("tests/"):
                found.append(f"line {node.lineno}: path {node.value!r}")
        else:
            names = []
        for name in names:
            top = name.split(".")[0]
            if top == "tests" or top in TEST_MODULES:
                found.append(f"line {node.lineno}: imports {name}")
    return found


def test_tools_import_nothing_from_tests():
    problems = {
        str(path.relative_to(ROOT)): _violations(path)
        for path in sorted((ROOT / "tools").glob("*.py"))
    }
    assert not {k: v for k, v in problems.items() if v}


def test_the_check_sees_the_old_path_entry(tmp_path):
    old = tmp_path / "bench.py"
    old.write_text(
        'sys.path.insert(0, str(ROOT / "tests" / "model_exec"))\n'
        "from onnx_models import resnet18\nimport reference\n"
    )
    assert len(_violations(old)) == 2  # the path and the tests-only module `reference`
