"""Benchmarks are part of the product: each section of tools/bench.py runs clean (slow: a few
minutes; figures are reported, never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "tools" / "bench.py"


@pytest.mark.slow
@pytest.mark.parametrize("section", ["foundation", "kernels", "model", "supervisor"])
def test_bench_section_runs_clean(section, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(BENCH), section, "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout)[section]
    assert results and "skipped" not in results, results  # a section that did not measure
    assert any(isinstance(v, float) for v in results.values()), results
