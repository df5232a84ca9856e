"""Render a campaign's report.html in headless Chromium and save a PNG screenshot.

    python tools/screenshot_report.py OUT_DIR PNG [--chromium PATH] [--height 2400]

This is the check that the report renders in a browser as it is (no network, no server): the
screenshot in docs/ comes from it. Chromium is Debian's ``chromium`` package. It gets a private
profile directory, so several renders (or a running browser) do not share one.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

TIMEOUT_S = 180  # a cold Chromium start on a loaded 2-core machine is slow, not hung


def find_chromium() -> str | None:
    """The Chromium binary on PATH, if any."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def screenshot(
    out_dir: Path, png: Path, chromium: str | None = None, width: int = 1280, height: int = 2400
) -> Path:
    """Screenshot ``out_dir/report.html`` into ``png``; raise with Chromium's output if it fails."""
    report = Path(out_dir) / "report.html"
    if not report.is_file():
        raise FileNotFoundError(f"{report}: no report (run `hil campaign report {out_dir}` first)")
    binary = chromium or find_chromium()
    if binary is None:
        raise FileNotFoundError("chromium not found (apt install chromium)")
    png = Path(png).resolve()
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="report-chromium-") as profile:
        proc = subprocess.run(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                f"--screenshot={png}",
                f"--window-size={width},{height}",
                report.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    if proc.returncode != 0 or not png.is_file():
        raise RuntimeError(f"chromium failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="campaign directory holding report.html")
    parser.add_argument("png", type=Path, help="where to write the screenshot")
    parser.add_argument("--chromium", help="Chromium binary (default: chromium on PATH)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=2400)
    args = parser.parse_args(argv)
    try:
        path = screenshot(args.out_dir, args.png, args.chromium, args.width, args.height)
    except (FileNotFoundError, RuntimeError) as exc:
        print(f"screenshot_report: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
