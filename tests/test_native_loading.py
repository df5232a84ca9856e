"""No silent fallback: without the compiled extension, importing the voter fails loudly."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

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


# --- the newcomer trap: a source checkout shadowing the installed package ----------------------

SOURCE = Path(__file__).resolve().parent.parent  # the repository (flight may be installed)
TOUR = "from flight.vote import vote"  # the README tour's first flight import


def _copy_package(destination: Path) -> Path:
    """flight/ without the built extension (and without bytecode), as a fresh clone has it."""
    shutil.copytree(
        SOURCE / "flight",
        destination / "flight",
        ignore=shutil.ignore_patterns("_native*.so", "_native*.pyd", "__pycache__"),
    )
    return destination / "flight"


def _import_in(cwd: Path, installed: Path) -> subprocess.CompletedProcess:
    """The README tour's import in a fresh ``python`` started in ``cwd``, as after a regular
    ``pip install .`` into ``installed``. ``-S`` leaves out this venv's .pth files: its
    editable-install finder would otherwise find the extension of the checkout under test; the
    venv's site-packages stays on the path for numpy and cffi. Without the suite's
    PYTHONSAFEPATH (conftest.py), so that the current directory comes first, as for a user."""
    script = (
        "try:\n"
        f"    {TOUR}\n"
        "except ImportError as exc:\n"
        "    print(type(exc).__name__)\n"
        "    print(exc)\n"
        "    raise SystemExit(3)\n"
    )
    path = os.pathsep.join([str(installed), sysconfig.get_paths()["purelib"]])
    return subprocess.run(
        [sys.executable, "-S", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**{k: v for k, v in os.environ.items() if k != "PYTHONSAFEPATH"}, "PYTHONPATH": path},
    )


def test_source_tree_without_extension_says_so_and_what_to_do(tmp_path):
    """`pip install .`, then `python` at the repository root: the source tree's flight/ (no .so)
    shadows the installed one. The message names the source tree, the installed copy, and the
    two ways out; it does not send the user to reinstall."""
    checkout = tmp_path / "checkout"
    package = _copy_package(checkout)
    for name in ("setup.py", "pyproject.toml"):
        shutil.copy(SOURCE / name, checkout / name)
    shutil.copytree(SOURCE / "native", checkout / "native")
    site = tmp_path / "site-packages"  # stands for the installed copy, later on sys.path
    (site / "flight").mkdir(parents=True)
    (site / "flight" / "__init__.py").write_text("")
    proc = _import_in(checkout, site)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    kind, message = proc.stdout.splitlines()[:2]
    assert kind == "NativeBuildError", proc.stdout
    assert f"source tree at {package}" in message
    assert f"installed flight is at {site / 'flight'}" in message
    assert "pip install -e ." in message and "Leave the source directory" in message
    assert "Reinstall" not in message


def test_installed_package_without_extension_asks_for_a_reinstall(tmp_path):
    """No setup.py and native/ beside the package: an installed copy missing its extension."""
    site = tmp_path / "site-packages"
    _copy_package(site)
    proc = _import_in(site, site)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    kind, message = proc.stdout.splitlines()[:2]
    assert kind == "NativeBuildError"
    assert "source tree" not in message
    assert "Reinstall flight" in message
