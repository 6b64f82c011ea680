"""report.html in a real browser: Debian's chromium, headless, with the network cut off.

The verdict must be in the rendered DOM, the embedded timeline must decode (naturalWidth >
0) and show in the screenshot (not blank where it sits), and the page must fetch nothing.
The report itself holds no script: a small wrapper page in tmp_path loads it in an iframe
and writes what it measured into its own DOM, which `--dump-dom` prints.

chromium is installed with apt when missing and running as root (CI: root, network to
Debian); otherwise the tests skip, saying so. Every browser run is time-bound and its
process group is killed if it hangs."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from pgdrill.reports import human, timeline
from tests.test_report import drill_context, drill_journal, make_run

BROWSER_TIMEOUT = 120
INSTALL_TIMEOUT = 900
WINDOW = (1280, 2000)
WRAPPER = """<!DOCTYPE html>
<html><head><meta charset="utf-8"></head><body style="margin:0">
<pre id="measured">pending</pre>
<iframe id="report" src="{report}" style="border:0;width:{w}px;height:{h}px"></iframe>
<script>
function measure() {{
  const doc = document.getElementById("report").contentDocument;
  const img = doc.querySelector("img.timeline");
  const box = img ? img.getBoundingClientRect() : null;
  document.getElementById("measured").textContent = JSON.stringify({{
    verdict: (doc.getElementById("verdict") || {{}}).textContent || null,
    img: img ? {{naturalWidth: img.naturalWidth, naturalHeight: img.naturalHeight,
                complete: img.complete, left: box.left, top: box.top, width: box.width,
                height: box.height}} : null,
    scripts: doc.scripts.length,
    fetched: doc.defaultView.performance.getEntriesByType("resource").map(e => e.name)
  }});
}}
const frame = document.getElementById("report");
if (frame.contentDocument && frame.contentDocument.readyState === "complete"
    && frame.contentDocument.querySelector("main")) {{ measure(); }}
else {{ frame.addEventListener("load", measure); }}
</script></body></html>
"""


def chromium_binary() -> str:
    """Debian's chromium: found, or installed with apt as root, or the test skips."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() != 0:
        pytest.skip(
            "chromium is not installed and installing it needs root: "
            "apt-get install -y --no-install-recommends chromium"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    if done.returncode != 0:  # stale package lists: update once and retry
        subprocess.run(
            ["apt-get", "update"], env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT
        )
        done = subprocess.run(
            install, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT
        )
    assert done.returncode == 0, f"apt-get install chromium failed:\n{done.stderr[-3000:]}"
    found = shutil.which("chromium")
    assert found, "apt-get installed chromium but it is not on PATH"
    return found


def browse(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    """One headless chromium run, network cut off, killed with its children if it hangs."""
    argv = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        "--disable-extensions",
        "--allow-file-access-from-files",
        f"--user-data-dir={profile}",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--virtual-time-budget=10000",
        *args,
    ]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=BROWSER_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=30)
        pytest.fail(f"chromium did not finish within {BROWSER_TIMEOUT}s: {err[-2000:]}")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # helpers of ours still around
        except ProcessLookupError:
            pass
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


@pytest.fixture(scope="module")
def chromium() -> str:
    return chromium_binary()


@pytest.fixture(scope="module")
def rendered(chromium, tmp_path_factory) -> dict:
    """A passed run's report.html, its DOM as chromium rendered it, a screenshot, and what
    the wrapper page measured inside it."""
    tmp = tmp_path_factory.mktemp("browser")
    folder = make_run(tmp, "20261130T200000Z-primary-pod-loss", drill_journal(), drill_context())
    evidence = json.loads((folder / "evidence.json").read_text())
    journal = json.loads((folder / "journal.json").read_text())
    human.write_reports(folder, evidence, journal)
    page = (folder / "report.html").resolve()
    dom = browse(chromium, tmp / "profile-dom", "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    shot = tmp / "screenshot.png"
    taken = browse(chromium, tmp / "profile-shot", f"--screenshot={shot}", page.as_uri())
    assert taken.returncode == 0 and shot.is_file(), taken.stderr[-2000:]
    wrapper = folder / "wrapper.html"
    wrapper.write_text(WRAPPER.format(report=page.name, w=WINDOW[0], h=WINDOW[1]))
    wrapped = browse(chromium, tmp / "profile-wrap", "--dump-dom", wrapper.resolve().as_uri())
    assert wrapped.returncode == 0, wrapped.stderr[-2000:]
    found = re.search(r'<pre id="measured">(.*?)</pre>', wrapped.stdout, re.S)
    assert found and found.group(1) != "pending", wrapped.stdout[:2000]
    measured = json.loads(human.html.unescape(found.group(1)))
    return {"dom": dom.stdout, "screenshot": shot, "measured": measured}


def test_the_verdict_is_in_the_rendered_dom(rendered):
    assert '<div class="banner passed" id="verdict"><strong>PASSED</strong>' in rendered["dom"]
    assert rendered["measured"]["verdict"].startswith("PASSED")
    for name in human.GUARDRAILS:
        assert name in rendered["dom"]


def test_the_timeline_image_decodes_and_nothing_is_fetched(rendered):
    img = rendered["measured"]["img"]
    assert img["complete"] is True
    assert (img["naturalWidth"], img["naturalHeight"]) == (timeline.WIDTH, timeline.HEIGHT)
    assert img["width"] > 600 and img["height"] > 250  # laid out, not collapsed
    assert rendered["measured"]["scripts"] == 0
    assert [u for u in rendered["measured"]["fetched"] if not u.startswith("data:")] == []


def test_the_timeline_shows_in_the_screenshot(rendered):
    from matplotlib.image import imread

    pixels = imread(rendered["screenshot"])  # floats 0..1, rows x columns x channels
    assert pixels.shape[:2] == (WINDOW[1], WINDOW[0])
    img = rendered["measured"]["img"]
    top, left = round(img["top"]), round(img["left"])
    region = pixels[
        top + 10 : top + round(img["height"]) - 10, left + 10 : left + round(img["width"]) - 10, :3
    ]
    assert region.size, "the timeline lies outside the screenshot"
    colours = {tuple(p) for p in (region[::4, ::4] * 255).round().astype(int).reshape(-1, 3)}
    assert len(colours) > 50, "the timeline region of the screenshot is blank"
    dark = (region.mean(axis=2) < 0.35).mean()  # text, axes, bars
    assert 0.01 < dark < 0.6
