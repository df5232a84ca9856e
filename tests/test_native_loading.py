"""No silent fallback: without the compiled extension, importing the voter fails loudly."""

from __future__ import annotations

import subprocess
import sys

BLOCKER = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "flight._native":
            raise ImportError("simulated: extension not built")
sys.meta_path.insert(0, Block())
try:
    import flight.vote
except Exception as exc:
    print(type(exc).__name__, isinstance(exc, ImportError))
    print(exc)
    raise SystemExit(3)
print("imported")
"""


def test_missing_extension_raises_native_build_error():
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKER], capture_output=True, text=True, timeout=60, cwd="/"
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    first, message = proc.stdout.splitlines()[:2]
    assert first == "NativeBuildError True"
    assert "pip install" in message


def test_extension_is_the_compiled_module():
    import flight._native as native

    assert native.__file__.endswith((".so", ".pyd"))
    assert hasattr(native.lib, "flight_vote")
