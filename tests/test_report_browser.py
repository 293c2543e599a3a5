"""The report of a tiny run opened in headless Chromium: no script or console error, every image
decodes, and a screenshot is saved (``make report-check`` installs Chromium and prints where).

Skipped where no Chromium is installed. A copy of the page gets a small script first in
``<head>`` that records errors (``window.onerror``, ``console.error``, resources that fail to
load) and, once the page has loaded, each ``<img>`` whose ``naturalWidth`` is 0; it writes them
as JSON into an element that ``--dump-dom`` prints.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import run_cli, write_config, write_csv_dataset

pytestmark = pytest.mark.browser

CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)

PROBE = """<script>
(function () {
  var errors = [];
  window.addEventListener("error", function (e) {
    var t = e.target;
    if (t && t !== window && (t.src || t.href)) {
      errors.push("failed to load " + (t.tagName || "") + " " + String(t.src || t.href).slice(0, 80));
    } else {
      errors.push("error: " + e.message);
    }
  }, true);
  window.addEventListener("unhandledrejection", function (e) {
    errors.push("unhandled rejection: " + e.reason);
  });
  var origError = console.error;
  console.error = function () {
    errors.push("console.error: " + Array.prototype.join.call(arguments, " "));
    return origError.apply(console, arguments);
  };
  window.addEventListener("load", function () {
    var imgs = Array.prototype.slice.call(document.images);
    var broken = imgs.filter(function (i) { return !i.complete || i.naturalWidth === 0; })
      .map(function (i) { return i.alt || String(i.src).slice(0, 60); });
    var out = document.createElement("pre");
    out.id = "__report_check";
    out.textContent = JSON.stringify({
      errors: errors, images: imgs.length, broken: broken,
      height: document.documentElement.scrollHeight,
      overflow: document.documentElement.scrollWidth > window.innerWidth + 1
    });
    document.body.appendChild(out);
  });
})();
</script>"""


def _chromium(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    base = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-extensions",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=0",
    ]
    return subprocess.run(
        [*base, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def check_page(page: Path, work: Path, width: int = 1400) -> dict:
    """Load a probed copy of ``page``: errors, image counts, height, horizontal overflow, and
    console errors Chromium logged."""
    text = page.read_text()
    probed = work / f"probed_{page.name}"
    probed.write_text(text.replace("<head>", "<head>" + PROBE, 1))
    done = _chromium(
        "--dump-dom",
        "--virtual-time-budget=10000",
        f"--window-size={width},1000",
        f"--user-data-dir={work / 'profile-dom'}",
        probed.resolve().as_uri(),
    )
    match = re.search(r'<pre id="__report_check">(.*?)</pre>', done.stdout, re.S)
    assert match, f"the page did not finish loading in Chromium:\n{done.stderr[-3000:]}"
    import html

    found = json.loads(html.unescape(match.group(1)))
    found["console"] = [
        line
        for line in done.stderr.splitlines()
        if ":CONSOLE" in line and ("Uncaught" in line or "Error" in line)
    ]
    return found


def screenshot(page: Path, path: Path, height: int, width: int = 1400) -> Path:
    height = max(800, min(int(height) + 40, 16000))
    done = _chromium(
        f"--screenshot={path}",
        f"--window-size={width},{height}",
        "--virtual-time-budget=5000",
        f"--user-data-dir={path.parent / 'profile-shot'}",
        page.resolve().as_uri(),
    )
    assert path.is_file() and path.stat().st_size > 0, done.stderr[-3000:]
    return path


@pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium installed (make report-check installs it)"
)
def test_report_renders_in_chromium_without_errors(tmp_path, capsys):
    root = write_csv_dataset(tmp_path / "data", n=240)
    train = {"epochs": 2, "batch_size": 64, "feature_dim": 16, "num_threads": 1}
    cfg = write_config(tmp_path / "cfg.yaml", root, methods=["erm", "rebalance"], train=train)
    out = tmp_path / "run"
    code, _, err = run_cli(["run", cfg, "--out", out, "--quiet"], capsys)
    assert code == 0, err
    page = out / "report.html"

    found = check_page(page, tmp_path)
    assert found["errors"] == [] and found["console"] == [], found
    assert found["images"] >= 5 and found["broken"] == [], found
    assert not found["overflow"], "the page scrolls sideways at 1400 px"

    shot = screenshot(page, tmp_path / "report.png", found["height"])
    keep = os.environ.get("SHORTCUTLAB_SCREENSHOT")
    if keep:
        Path(keep).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, keep)
        shutil.copy(page, Path(keep).with_suffix(".html"))


@pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium installed (make report-check installs it)"
)
def test_the_check_catches_a_broken_image_and_a_script_error(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text(
        "<!doctype html><html><head><title>x</title></head><body>"
        '<img src="data:image/png;base64,AAAA" alt="broken one">'
        "<script>undefinedFunction();</script></body></html>"
    )
    found = check_page(page, tmp_path)
    assert found["broken"] == ["broken one"]
    assert any("undefinedFunction" in e for e in found["errors"]), found
