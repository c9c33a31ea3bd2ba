"""``supertiny report RUN_DIR``: the verb's arguments and run, and a PNG screenshot of the page.

    supertiny report runs/sh_demo                        # writes runs/sh_demo/report.html
    supertiny report runs/sh_demo --screenshot /tmp/sh_demo.png

``screenshot`` renders the page with headless Chromium (one of ``BROWSERS``); the page itself
is ``page.py``'s.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

from supertiny.report.page import write_report
from supertiny.report.sections import REPORTS, load_run

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def screenshot(html: Path, png: Path, width: int = 1400, height: int = 2400) -> Path:
    """Render the page ``html`` with headless Chromium into ``png`` (width x height pixels)."""
    browser = next((path for path in map(shutil.which, BROWSERS) if path), None)
    if browser is None:
        raise RuntimeError(
            f"no browser found ({', '.join(BROWSERS)}): install chromium, e.g. apt-get install chromium"
        )
    png = Path(png).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    args = [
        browser,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--screenshot={png}",
        f"--window-size={width},{height}",
        Path(html).resolve().as_uri(),
    ]
    done = subprocess.run(args, capture_output=True, text=True, timeout=180)
    if done.returncode != 0 or not png.is_file():
        tail = "\n".join(done.stderr.strip().splitlines()[-8:])
        raise RuntimeError(
            f"{browser} could not screenshot {html} (exit {done.returncode}):\n{tail}"
        )
    return png


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``supertiny report``."""
    parser.add_argument(
        "run_dir", metavar="RUN_DIR", type=Path, help="run directory, e.g. runs/smart_home"
    )
    parser.add_argument(
        "--out", type=Path, metavar="PATH", help="HTML file to write (default: RUN_DIR/report.html)"
    )
    parser.add_argument(
        "--screenshot",
        type=Path,
        metavar="PNG",
        help="also render the page to a PNG (needs chromium)",
    )


def run_from_args(args: argparse.Namespace) -> int:
    """Write the report (and the screenshot if asked): 0; 2 when the run has nothing to report."""
    from supertiny.core.progress import console

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir() or not any((run_dir / p).is_file() for p in REPORTS.values()):
        problem = "no such run directory" if not run_dir.is_dir() else "no stage report in it"
        console.print(
            f"[red]error:[/] {run_dir}: {problem} (looked for {', '.join(REPORTS.values())}); "
            f"run a stage first, e.g. `{load_run(run_dir).command('label')}`"
        )
        return 2
    out = write_report(run_dir, getattr(args, "out", None))
    console.print(f"report: {out}")
    if getattr(args, "screenshot", None):
        try:
            console.print(f"screenshot: {screenshot(out, args.screenshot)}")
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            console.print(f"[red]error:[/] {exc}")
            return 1
    return 0
