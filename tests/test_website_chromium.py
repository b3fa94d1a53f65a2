"""The website served through --forward on miragekit's own stack, in headless Chromium.

Chromium loads the page, its stylesheet and its image through the host's socket, the
forwarder, two pure-Python TCP/IP stacks and the virtual switch; the screenshot must show
what only the stylesheet (the header's blue, the sand background) and the image (the sun)
can put there.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from tests.apprun import SITE, running
from tests.pngread import read_png

pytestmark = pytest.mark.tools

HEADER_BLUE = (0x2A, 0x5C, 0xA8)  # style.css: header background
SAND = (0xF4, 0xE3, 0xC1)  # style.css: body background
SUN = (255, 200, 60)  # mirage.png


def test_page_with_image_and_stylesheet_renders(tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    assert chromium, "chromium is installed by .ci/run (apt-get install chromium)"
    args = ["--net", "vnet", "--forward", "0:80", "--kv", str(SITE)]
    with running("examples/static_website", *args, ready="serving the store") as r:
        (port,) = r.forwarded()
        shot = tmp_path / "shot.png"
        cmd = [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}", "--window-size=800,600", f"http://127.0.0.1:{port}/",
        ]  # fmt: skip
        p = subprocess.run(cmd, capture_output=True, timeout=90, check=False)
        assert p.returncode == 0 and shot.exists(), p.stderr.decode(errors="replace")[-2000:]
        r.wait_for(r'"GET /style\.css" 200 ')
        r.wait_for(r'"GET /mirage\.png" 200 1024$')
    img = read_png(shot.read_bytes())
    assert (img.width, img.height) == (800, 600)
    colours = img.colours()
    total = img.width * img.height
    assert len(colours) > 50, "the screenshot is (nearly) one colour"
    assert colours.most_common(1)[0][1] < 0.9 * total
    assert colours[HEADER_BLUE] > 0.1 * total, "the stylesheet's header is missing"
    assert colours[SAND] > 0.1 * total, "the stylesheet's background is missing"
    assert colours[SUN] > 1000, "the image is missing"
