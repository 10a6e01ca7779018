"""The HTML report renders in a real browser: headless Chromium decodes all three inline plots.

Skipped when Chromium is missing, unless CAI_REQUIRE_CHROMIUM=1 (CI installs it and sets that).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from cai.eval.report import to_html
from tests.helpers.data import summary

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


@pytest.fixture
def chromium() -> str:
    path = find_chromium()
    if path is None:
        if os.environ.get("CAI_REQUIRE_CHROMIUM") == "1":
            pytest.fail("CAI_REQUIRE_CHROMIUM=1 but no chromium found (apt-get install chromium)")
        pytest.skip("chromium not installed")
    return path


def headless(chromium: str, profile, *args: str) -> subprocess.CompletedProcess:
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--virtual-time-budget=5000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_report_renders_with_every_plot(tmp_path, chromium):
    page = tmp_path / "report.html"
    page.write_text(to_html(summary()), encoding="utf-8")
    r = headless(chromium, tmp_path / "profile", "--dump-dom", page.as_uri())
    assert r.returncode == 0, r.stderr[-2000:]
    body = re.search(r"<body[^>]*>", r.stdout)
    assert body, r.stdout[:500]
    assert 'data-images="3"' in body.group(0), body.group(0)
    assert 'data-images-ok="3"' in body.group(0), body.group(0)  # every plot decoded
    assert "harmful compliance" in r.stdout and 'id="summary"' in r.stdout
    shot = tmp_path / "shot.png"
    r = headless(chromium, tmp_path / "profile2", f"--screenshot={shot}", "--window-size=1200,1600",
                 page.as_uri())
    assert r.returncode == 0 and shot.read_bytes().startswith(b"\x89PNG")


def test_a_broken_image_is_caught(tmp_path, chromium):
    """The check is real: a plot whose bytes are not a PNG is not counted."""
    html = to_html(summary())
    first = re.search(r"base64,([A-Za-z0-9+/=]+)", html).group(1)
    page = tmp_path / "broken.html"
    page.write_text(html.replace(first, "bm90IGEgcG5n", 1), encoding="utf-8")
    r = headless(chromium, tmp_path / "profile", "--dump-dom", page.as_uri())
    body = re.search(r"<body[^>]*>", r.stdout).group(0)
    assert 'data-images="3"' in body and 'data-images-ok="2"' in body, body
