"""`dualipo report` on a tiny real run made through the CLI: the page's content, escaping, a critic refinement
curve when one is recorded, and a headless Chromium that loads the page from disk."""

import json
import re
import shutil
import sqlite3

import pytest

from browser_util import chromium_path
from rounds_util import TINY, cli

EVIL_PROMPT = '<script>alert("prompt")</script> a red circle & "friends"'
DATA_VIDEO = 'src="data:video/mp4;base64,'


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 2-round tiny run whose first training prompt carries markup, and its report."""
    root = tmp_path_factory.mktemp("report")
    (root / "prompts.txt").write_text(f"{EVIL_PROMPT}\na green triangle moving up on a gray background\n"
                                      "a blue square moving left on a black background\n")
    cli(["run", *TINY, "rounds.num_rounds=2", "rounds.prompt_file=prompts.txt", "critic_refine.seed_mix=0",
         "--out", "run"], root)
    p = cli(["report", "run"], root)
    assert "wrote run/report.html" in p.stdout
    return root / "run"


def test_the_loop_records_the_new_evaluation_metrics(run):
    lines = {(r["round"], r["stage"]): r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())}
    base, last = lines[(0, "evaluate")], lines[(2, "evaluate")]
    for key in ("video_temporal_flickering_all", "video_dynamic_degree", "video_motion_smoothness",
                "video_frame_consistency", "video_static_fraction"):
        assert 0.0 <= base[key] <= 1.0 and 0.0 <= last[key] <= 1.0
    assert "critic_win_rate" not in base  # round 0 is the reference
    assert last["critic_win_rate_judgments"] >= 1 and 0.0 <= last["critic_win_rate"] <= 1.0


def test_report_content(run):
    html = (run / "report.html").read_text()
    # the per-round table of every metric, with deltas vs round 0
    assert ">base</th>" in html and ">round 1</th>" in html and ">round 2</th>" in html
    for name in ("oracle_overall", "video_motion_smoothness", "critic_win_rate", "kept", "final_dpo_loss"):
        assert f'<td class="name">{name}</td>' in html
    assert html.count('class="delta"') >= 10
    # the plots, inline
    assert html.count("<svg") >= 4 and "<?xml" not in html
    for title in ("evaluation over rounds", "generator loss", "implicit accuracy", "kept vs dropped judgments"):
        assert title in html
    assert "critic refinement loss" in html and "no critic refinement in this run" not in html  # the SRPO curve
    # videos as data URIs: the grid (2 held-out prompts x 3 rounds) and both videos of each sampled judgment
    assert html.count(DATA_VIDEO) == 2 * 3 + 2 * 3 * 2
    assert html.count("autoplay loop muted playsinline") == html.count(DATA_VIDEO)
    # every sampled rationale, the votes, the filter's decision
    assert "majority <b>" in html and re.search(r">(kept|dropped \(\w[\w ]*\))<", html)
    # user text is escaped; nothing is fetched from anywhere
    assert "&lt;script&gt;alert(&#34;prompt&#34;)&lt;/script&gt; a red circle &amp; &#34;friends&#34;" in html
    assert "<script" not in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//|url\(\s*["']?https?:""", html)


def test_rationales_are_escaped_and_a_run_without_refinement_says_so(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    db = sqlite3.connect(copy / "ledger.sqlite")
    rows = db.execute("SELECT rowid, samples FROM judgments").fetchall()
    for rowid, samples in rows:
        samples = json.loads(samples)
        samples[0]["text"] = "<img src=x onerror=alert(1)> A is better"
        db.execute("UPDATE judgments SET samples = ? WHERE rowid = ?", (json.dumps(samples), rowid))
    db.commit()
    db.close()
    for k in (1, 2):  # as a frozen-critic (IPO) run leaves it
        shutil.rmtree(copy / f"round_0{k}" / "critic")
    cli(["report", str(copy), "--out", str(tmp_path / "r.html"), "--num-prompts", "1", "--num-judgments", "1"],
        tmp_path)
    html = (tmp_path / "r.html").read_text()
    assert "&lt;img src=x onerror=alert(1)&gt; A is better" in html and "<img" not in html
    assert "no critic refinement in this run" in html
    assert html.count(DATA_VIDEO) == 1 * 3 + 2 * 1 * 2


def test_report_errors(tmp_path):
    p = cli(["report", str(tmp_path)], tmp_path, check=False)
    assert p.returncode == 2 and "holds no run ledger" in p.stderr


def test_report_loads_in_a_browser(run, tmp_path):
    path = chromium_path()
    from playwright.sync_api import sync_playwright

    problems = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url[:80]}"))
            page.goto((run / "report.html").as_uri())
            n = page.evaluate("document.querySelectorAll('video').length")
            page.wait_for_function("Array.from(document.querySelectorAll('video'))"
                                   ".every(v => v.readyState >= 2 && v.videoWidth > 0 && !v.error)", timeout=20000)
            assert page.evaluate("Array.from(document.querySelectorAll('video')).every(v => v.muted && v.loop)")
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert n == 2 * 3 + 2 * 3 * 2
    assert problems == []
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_one_point_curve_is_drawn_as_a_dot():
    from matplotlib.figure import Figure

    from dualipo.report_plots import _step_lines

    ax = Figure().subplots()
    assert _step_lines(ax, {1: [{"step": 100, "loss": 0.5}], 2: [{"loss": 0.4}, {"loss": 0.3}]}, ["loss"])
    assert [line.get_marker() for line in ax.lines if line.get_linestyle() == "-"] == ["o", "None"]
