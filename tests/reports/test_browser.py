"""The HTML report in a real browser: headless Chromium loads it, draws it, logs no error."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image

CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *args]
    # The timeout only stops a hung browser from hanging the suite; nothing asserts on time.
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.long
@pytest.mark.browser
def test_report_loads_in_headless_chromium(rendered: tuple[Path, list[Path]], tmp_path: Path) -> None:
    binary = find_chromium()
    if binary is None:
        pytest.skip("no chromium found (apt-get install chromium) to load the HTML report")
    outdir, _ = rendered
    url = (outdir / "report.html").resolve().as_uri()

    shot = tmp_path / "report.png"
    # One browser run: screenshot and the DOM after the load event (the page's script has marked
    # <body> with its picture count by then).
    run = chromium(binary, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,2000",
                   "--hide-scrollbars", "--dump-dom", url)
    assert run.returncode == 0, run.stderr[-2000:]
    # The page logs to the console only when something failed (a picture that did not decode, a
    # script error); Chromium copies console messages to stderr as "CONSOLE" lines.
    console = [line for line in run.stderr.splitlines() if "CONSOLE" in line]
    assert console == []

    body = re.search(r"<body([^>]*)>", run.stdout)
    assert body is not None, run.stdout[:500]
    assert 'data-images="4"' in body.group(1) and 'data-broken-images="0"' in body.group(1)

    pixels = image.imread(str(shot))
    assert pixels.shape[0] == 2000 and pixels.shape[1] == 1280
    rgb = np.asarray(pixels[:, :, :3])
    assert float(rgb.std()) > 0.05, "the screenshot is (nearly) one colour"
    q = (rgb * 255).round().astype(np.uint32)
    colours = np.unique((q[..., 0] << 16) | (q[..., 1] << 8) | q[..., 2])
    assert len(colours) > 50, "text and plots draw many colours"
