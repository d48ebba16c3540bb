"""`dualipo annotate` served by the real CLI and driven in a headless Chromium: label three pairs by clicking and
by keyboard, type a reason, undo one, and check the labels file on disk after each step."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from browser_util import chromium_path
from dualipo.config import build_config
from dualipo.critic_training.toy_seed import write_variants
from rounds_util import BIN

EVIL = "<script>window.pwned = 1</script><img src=x onerror=\"window.pwned = 2\"> a circle & \"friends\""
SHOTS = Path(os.environ.get("DUALIPO_SCREENSHOTS", "")) if os.environ.get("DUALIPO_SCREENSHOTS") else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    """The app on a manifest of 4 pairs (the first prompt carries markup), as `dualipo annotate` serves it."""
    d = tmp_path / "videos"
    write_variants(build_config("tiny").world, d, n_prompts=2, per_prompt=2, seed=0)
    vids = sorted(str(p.relative_to(d)) for p in d.rglob("*.mp4"))
    prompts = [EVIL, "a red circle moving left", "a blue square moving up", "two green circles"]
    (d / "manifest.jsonl").write_text("".join(
        json.dumps({"prompt": p, "video_a": vids[i % 2 * 2], "video_b": vids[i % 2 * 2 + 1]}) + "\n"
        for i, p in enumerate(prompts)))
    port, labels = _free_port(), tmp_path / "labels.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "dualipo.cli", "annotate", "--videos", str(d / "manifest.jsonl"),
                             "--out", str(labels), "--port", str(port), "--token", "tok"],
                            env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/?token=tok"
    for _ in range(300):
        try:
            urllib.request.urlopen(url, timeout=1)
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"dualipo annotate exited: {proc.stdout.read()}")
            time.sleep(0.1)
    yield url, labels, prompts
    proc.terminate()
    proc.wait(timeout=20)


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_label_three_pairs_by_click_and_keyboard_then_undo(server, tmp_path):
    path = chromium_path()
    from playwright.sync_api import expect, sync_playwright

    url, labels, prompts = server
    shots = SHOTS or tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    problems, shown = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 820})
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.goto(url)
            page.fill("#annotator", "alice")
            page.press("#annotator", "Tab")  # change event: the annotator's queue
            expect(page.locator("#progress")).to_have_text("0 of 4 labelled")
            expect(page.locator("#prompt")).to_have_text(EVIL)  # markup shown as text
            page.wait_for_function("Array.from(document.querySelectorAll('video'))"
                                   ".every(v => v.readyState >= 2 && v.videoWidth > 0 && !v.error)", timeout=20000)
            assert page.evaluate("window.pwned") is None
            page.screenshot(path=str(shots / "annotate_pairwise.png"))

            def left_video():
                shown.append(page.evaluate("document.querySelector('video').getAttribute('src')"))

            left_video()
            page.click("button[data-label=A]")  # 1: click
            expect(page.locator("#progress")).to_have_text("1 of 4 labelled")
            left_video()
            page.keyboard.press("b")  # 2: keyboard
            expect(page.locator("#progress")).to_have_text("2 of 4 labelled")
            left_video()
            page.fill("#reason", "both circles drift the same way")
            page.press("#reason", "Escape")
            page.keyboard.press("t")  # 3: keyboard after typing a reason
            expect(page.locator("#progress")).to_have_text("3 of 4 labelled")
            assert [r["label"] for r in _lines(labels)] == ["A", "B", "tie"]
            page.keyboard.press("u")  # undo the third
            expect(page.locator("#progress")).to_have_text("2 of 4 labelled")
            expect(page.locator("#prompt")).to_have_text(prompts[2])
            expect(page.locator("#reason")).to_have_value("both circles drift the same way")
            page.screenshot(path=str(shots / "annotate_after_undo.png"))
            assert [r["label"] for r in _lines(labels)] == ["A", "B"]
            page.click("button[data-label=tie]")  # label it again, the reason kept
            expect(page.locator("#progress")).to_have_text("3 of 4 labelled")
        finally:
            browser.close()
    recs = _lines(labels)
    assert [(r["prompt"], r["label"], r["annotator"]) for r in recs] == \
        [(prompts[0], "A", "alice"), (prompts[1], "B", "alice"), (prompts[2], "tie", "alice")]
    assert recs[2]["reason"] == "both circles drift the same way" and recs[0]["reason"] == ""
    for r, src in zip(recs, shown):  # video_a is the video shown as A, whichever order the item drew
        served = tmp_path / "videos" / src.split("?")[0].removeprefix("videos/")
        assert (labels.parent / r["video_a"]).resolve() == served.resolve()
    assert problems == []
    assert (shots / "annotate_pairwise.png").read_bytes()[:4] == b"\x89PNG"
