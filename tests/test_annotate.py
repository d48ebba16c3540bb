"""The annotation app: items, the labels file, every endpoint (attacks included), concurrency, resume, stats."""

import json
import threading
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from dualipo.annotate.app import create_app
from dualipo.annotate.items import item_id, items_from_run, items_from_videos, make_item
from dualipo.annotate.stats import agreement, reference_labels
from dualipo.annotate.store import LabelStore
from dualipo.config import build_config
from dualipo.critics.oracle import OracleCritic
from dualipo.critic_training.seed import load_seed
from dualipo.critic_training.toy_seed import write_variants
from dualipo.ledger import Ledger
from dualipo.toy.seed_labels import label_pair
from dualipo.video import read_video
from rounds_util import TINY, cli


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    write_variants(build_config("tiny").world, d, n_prompts=2, per_prompt=3, seed=0)
    return d


def manifest(videos: Path, n: int, prompt=lambda i: f"prompt {i}") -> Path:
    """n pairwise items over the folder's first two videos (one per prompt)."""
    a, b = sorted(str(p.relative_to(videos)) for p in videos.rglob("*.mp4"))[:2]
    path = videos / f"manifest_{n}.jsonl"
    path.write_text("".join(json.dumps({"prompt": prompt(i), "video_a": a, "video_b": b}) + "\n" for i in range(n)))
    return path


@pytest.fixture
def app_for(tmp_path):
    stores = []

    def make(root, items, token=""):
        store = LabelStore(tmp_path / "labels.jsonl")
        stores.append(store)
        return TestClient(create_app(items, store, root, token)), store

    yield make
    for s in stores:
        s.close()


def test_items_from_a_folder_are_the_critics_pairs_in_a_drawn_order(videos):
    root, items = items_from_videos(videos, "pairwise", ("overall", "motion"))
    assert root == videos and len(items) == 2 * 3 * 2  # 2 prompts x C(3, 2) pairs x 2 dimensions
    assert len({it.id for it in items}) == len(items)
    assert {it.swapped for it in items} == {True, False}  # the presentation order is drawn per item
    for it in items:
        assert it.mode == "pairwise" and it.options == ("A", "B", "tie")
        assert it.id == item_id(it.prompt, it.videos[::-1], it.dimension)  # the id ignores the order
        assert make_item(it.prompt, it.videos, it.dimension).id == it.id
    _, points = items_from_videos(videos, "pointwise", ("overall",))
    assert len(points) == 6 and all(p.options == ("Good", "Normal", "Bad") for p in points)


def test_items_from_a_run_ledger_are_the_rounds_judgments(videos, tmp_path):
    run = tmp_path / "run"
    vids = run / "videos"
    vids.mkdir(parents=True)
    pool = [json.loads(line) for line in (videos / "prompts.jsonl").read_text().splitlines()]
    for i, r in enumerate(pool):
        (vids / f"v{i}.mp4").write_bytes((videos / r["path"]).read_bytes())
    cfg = {"judging": {"mode": "pairwise", "dimensions": ["alignment"]}}
    prompts = sorted({r["prompt"] for r in pool})
    ledger = Ledger.create(run, cfg, [(f"p{i}", p) for i, p in enumerate(prompts)], {})
    for i, r in enumerate(pool):
        ledger.add_video(1, "train", f"p{prompts.index(r['prompt'])}", i, i, f"videos/v{i}.mp4", "x", "base")
    ledger.close()
    root, items = items_from_run(run, 1)
    assert root == run and len(items) == 2 * 3 and {it.dimension for it in items} == {"alignment"}
    _, items = items_from_run(run, 1, mode="pointwise", dimensions=("overall", "motion"))
    assert len(items) == 6 * 2
    ledger = Ledger.open(run)
    ledger.set_meta("config", json.dumps({"judging": {**cfg["judging"], "pairs_from": "scores"}}))
    ledger.close()
    _, items = items_from_run(run, 1)  # a critic judging pairs from scores learns from pointwise labels
    assert len(items) == 6 and {it.mode for it in items} == {"pointwise"}
    with pytest.raises(ValueError, match="no sampled videos in round 2"):
        items_from_run(run, 2)


def test_a_video_outside_the_source_folder_is_refused(videos, tmp_path):
    m = tmp_path / "m.jsonl"
    m.write_text(json.dumps({"prompt": "p", "video": str(next(videos.rglob("*.mp4")))}) + "\n")
    with pytest.raises(ValueError, match="is outside"):
        items_from_videos(m)
    m.write_text(json.dumps({"prompt": "p", "video_a": "x.mp4"}) + "\n")
    with pytest.raises(ValueError, match=r"m.jsonl:1: expected"):
        items_from_videos(m)


def test_label_round_trip_in_the_seed_format(videos, app_for, tmp_path):
    root, items = items_from_videos(videos, "pairwise", ("overall",))
    client, store = app_for(root, items)
    v = client.get("/api/next", params={"session": "s1", "annotator": "ann"}).json()
    assert v["done"] is False and v["labelled"] == 0 and v["total"] == 6 and v["mode"] == "pairwise"
    it = next(i for i in items if i.id == v["item"])
    assert v["videos"] == ["videos/" + str(Path(p).relative_to(videos)) for p in it.videos]  # A then B, as presented
    r = client.post("/api/label", json={"item": v["item"], "label": "A", "reason": "A moves left", "annotator": "ann",
                                        "session": "s1"})
    assert r.status_code == 200 and r.json()["labelled"] == 1
    rec = json.loads((tmp_path / "labels.jsonl").read_text())
    assert (tmp_path / rec["video_a"]).resolve() == Path(it.videos[0])
    assert rec["label"] == "A" and rec["swapped"] == it.swapped and rec["annotator"] == "ann"
    [seed] = load_seed(tmp_path / "labels.jsonl")  # what cold start reads, video files checked
    assert Path(seed.videos[0]).resolve() == Path(it.videos[0]) and seed.reason == "A moves left"
    cli(["critic", "import", str(tmp_path / "labels.jsonl"), "--out", str(tmp_path / "imported.jsonl")], tmp_path)
    assert load_seed(tmp_path / "imported.jsonl")[0].label == "A"
    nxt = client.get("/api/next", params={"session": "s1", "annotator": "ann"}).json()
    assert nxt["item"] != v["item"] and nxt["labelled"] == 1


def test_malformed_labels_get_422_and_nothing_is_written(videos, app_for, tmp_path):
    root, items = items_from_videos(videos, "pairwise", ("overall",))
    client, _ = app_for(root, items)
    ok = {"item": items[0].id, "label": "A", "reason": "", "annotator": "", "session": "s"}
    bad = [{**ok, "label": "Good"}, {**ok, "label": "a"}, {**ok, "item": "nope"}, {k: v for k, v in ok.items()
           if k != "session"}, {**ok, "extra": 1}, {**ok, "reason": "x" * 5000}, {**ok, "label": 3},
           {**ok, "session": "../x"}, {**ok, "annotator": "<b>x</b>"}, [ok], "A"]
    for body in bad:
        assert client.post("/api/label", json=body).status_code == 422, body
    assert client.post("/api/label", content=b"{not json", headers={"Content-Type": "application/json"}
                       ).status_code == 422
    assert client.post("/api/skip", json={"item": "nope", "session": "s"}).status_code == 422
    assert client.get("/api/next").status_code == 422  # no session
    assert client.get("/api/next", params={"session": "../x"}).status_code == 422
    assert client.get("/api/next", params={"session": "s", "annotator": "<i>"}).status_code == 422
    assert not (tmp_path / "labels.jsonl").exists() or (tmp_path / "labels.jsonl").read_text() == ""


def test_one_label_per_annotator_and_item_skip_and_undo(videos, app_for, tmp_path):
    root, items = items_from_videos(videos, "pointwise", ("overall",))
    client, _ = app_for(root, items)
    first = client.get("/api/next", params={"session": "s"}).json()
    assert first["options"] == ["Good", "Normal", "Bad"] and len(first["videos"]) == 1
    body = {"item": first["item"], "label": "Good", "reason": "", "annotator": "", "session": "s"}
    assert client.post("/api/label", json=body).status_code == 200
    assert client.post("/api/label", json={**body, "session": "t"}).status_code == 409  # same annotator
    assert client.post("/api/label", json={**body, "annotator": "bo", "session": "t"}).status_code == 200
    second = client.get("/api/next", params={"session": "s"}).json()
    assert client.post("/api/skip", json={"item": second["item"], "session": "s"}).status_code == 200
    order = []
    for _ in range(len(items) - 1):
        v = client.get("/api/next", params={"session": "s"}).json()
        order.append(v["item"])
        client.post("/api/label", json={**body, "item": v["item"], "label": "Bad"})
    assert order[-1] == second["item"] and len(set(order)) == len(items) - 1  # the skipped one comes last
    assert client.get("/api/next", params={"session": "s"}).json() == {"done": True, "labelled": 6, "total": 6}
    undone = client.post("/api/undo", json={"session": "s"}).json()
    assert undone["undone"]["item"] == second["item"] and undone["next"]["item"] == second["item"]
    assert client.get("/api/next", params={"session": "s"}).json()["item"] == second["item"]
    lines = [json.loads(x) for x in (tmp_path / "labels.jsonl").read_text().splitlines()]
    assert len(lines) == 6 and sum(r["annotator"] == "bo" for r in lines) == 1  # 5 by "", 1 by bo
    assert second["item"] not in {r["item"] for r in lines if r["annotator"] == ""}
    assert client.post("/api/undo", json={"session": "never"}).status_code == 409


@pytest.mark.parametrize("path", ["/videos/../../etc/passwd", "/videos/%2e%2e/%2e%2e/etc/passwd",
                                  "/videos/..%2f..%2fetc%2fpasswd", "/videos/%2Fetc%2Fpasswd", "/videos//etc/passwd",
                                  "/videos/%252e%252e%252fetc%252fpasswd", "/videos/prompts.jsonl",
                                  "/videos/..%5c..%5cetc%5cpasswd", "/etc/passwd", "/videos/"])
def test_only_the_items_videos_are_served(videos, app_for, path):
    root, items = items_from_videos(videos, "pairwise", ("overall",))
    client, _ = app_for(root, items)
    assert client.get(path).status_code == 404
    name = Path(items[0].videos[0]).relative_to(videos)
    r = client.get(f"/videos/{name}")
    assert r.status_code == 200 and r.content == (videos / name).read_bytes()


def test_a_token_guards_every_request(videos, app_for):
    root, items = items_from_videos(videos, "pairwise", ("overall",))
    client, _ = app_for(root, items, token="s3cret")
    name = Path(items[0].videos[0]).relative_to(videos)
    for path in ("/", "/api/next?session=s", f"/videos/{name}"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers={"X-Token": "wrong"}).status_code == 401
        assert client.get(path, headers={"X-Token": "s3cret"}).status_code == 200
    assert client.get(f"/videos/{name}?token=s3cret").status_code == 200
    body = {"item": items[0].id, "label": "A", "session": "s"}
    assert client.post("/api/label", json=body).status_code == 401
    assert client.post("/api/label", json=body, headers={"X-Token": "s3cret"}).status_code == 200


def test_the_page_carries_no_prompt_and_sets_text_only(videos, app_for):
    root, items = items_from_videos(manifest(videos, 1, lambda i: "<script>alert(1)</script>"))
    client, _ = app_for(root, items)
    page = client.get("/").text
    assert "alert(1)" not in page and "innerHTML" not in page and "textContent = view.prompt" in page
    assert client.get("/api/next", params={"session": "s"}).json()["prompt"] == "<script>alert(1)</script>"


def test_two_concurrent_clients_store_exactly_200_labels(videos, app_for, tmp_path):
    root, items = items_from_videos(manifest(videos, 250))
    client, _ = app_for(root, items)
    errors = []

    def annotate(session):
        with TestClient(client.app) as c:
            for _ in range(100):
                v = c.get("/api/next", params={"session": session}).json()
                r = c.post("/api/label", json={"item": v["item"], "label": "tie", "session": session})
                if r.status_code != 200:
                    errors.append(r.text)

    threads = [threading.Thread(target=annotate, args=(s,)) for s in ("tab1", "tab2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = [json.loads(x) for x in (tmp_path / "labels.jsonl").read_text().splitlines()]
    assert errors == [] and len(lines) == 200 and len({r["item"] for r in lines}) == 200
    assert {r["session"] for r in lines} == {"tab1", "tab2"}


def test_a_restarted_server_resumes_and_a_second_one_is_refused(videos, tmp_path):
    root, items = items_from_videos(videos, "pairwise", ("overall",))
    store = LabelStore(tmp_path / "labels.jsonl")
    with pytest.raises(ValueError, match="another annotation server"):
        LabelStore(tmp_path / "labels.jsonl")
    c = TestClient(create_app(items, store, root))
    done = []
    for _ in range(4):
        v = c.get("/api/next", params={"session": "s", "annotator": "x"}).json()
        c.post("/api/label", json={"item": v["item"], "label": "B", "annotator": "x", "session": "s"})
        done.append(v["item"])
    store.close()
    store = LabelStore(tmp_path / "labels.jsonl")
    c = TestClient(create_app(items, store, root))
    seen = []
    while not (v := c.get("/api/next", params={"session": "new", "annotator": "x"}).json())["done"]:
        assert v["labelled"] == 4 + len(seen)
        seen.append(v["item"])
        c.post("/api/label", json={"item": v["item"], "label": "A", "annotator": "x", "session": "new"})
    store.close()
    assert sorted(done + seen) == sorted(it.id for it in items)
    full = (tmp_path / "labels.jsonl").read_text()
    (tmp_path / "labels.jsonl").write_text(full + '{"prompt": "torn by a cr')  # a crash in mid-append
    store = LabelStore(tmp_path / "labels.jsonl")
    assert len(store.records) == len(items) and (tmp_path / "labels.jsonl").read_text() == full
    store.close()


def _record(path: Path, prompt, a, b, label, annotator):
    with path.open("a") as f:
        f.write(json.dumps({"prompt": prompt, "video_a": a, "video_b": b, "dimension": "overall", "label": label,
                            "reason": "", "annotator": annotator}) + "\n")


def test_agreement_by_hand(videos, tmp_path):
    pool = [json.loads(line) for line in (videos / "prompts.jsonl").read_text().splitlines()]
    p, (a, b, c) = pool[0]["prompt"], [str(videos / r["path"]) for r in pool[:3]]
    labels = tmp_path / "l.jsonl"
    _record(labels, p, a, b, "A", "x")
    _record(labels, p, b, a, "B", "y")  # the same answer, shown the other way round
    _record(labels, p, a, c, "tie", "x")
    _record(labels, p, a, c, "A", "y")
    _record(labels, p, b, c, "B", "x")  # x only
    s = agreement(load_seed(labels))
    assert s["labels"] == 5 and s["items"] == 3 and s["items_labelled_by_several"] == 2
    assert s["annotators"] == {"x": 3, "y": 2}
    assert s["between_annotators"] == [{"a": "x", "b": "y", "shared": 2, "agreement": 0.5}]
    ref = reference_labels(OracleCritic(0.0, "comparison"), load_seed(labels))
    rng = np.random.default_rng(0)
    want = {}
    for v1, v2 in ((a, b), (a, c), (b, c)):
        s1, s2 = sorted((v1, v2))
        want[item_id(p, (v1, v2), "overall")] = label_pair(p, read_video(s1), read_video(s2), "overall", rng, 0).label
    assert ref == want
    x_hits = sum(want[item_id(p, v, "overall")] == lab for v, lab in
                 (((a, b), "A" if sorted((a, b))[0] == a else "B"), ((a, c), "tie"),
                  ((b, c), "B" if sorted((b, c))[0] == b else "A")))
    assert agreement(load_seed(labels), ref)["with_reference"]["x"] == {"shared": 3, "agreement": round(x_hits / 3, 4)}


def test_stats_through_the_cli(videos, tmp_path):
    pool = [json.loads(line) for line in (videos / "prompts.jsonl").read_text().splitlines()]
    labels = tmp_path / "l.jsonl"
    _record(labels, pool[0]["prompt"], str(videos / pool[0]["path"]), str(videos / pool[1]["path"]), "A", "x")
    _record(labels, pool[0]["prompt"], str(videos / pool[0]["path"]), str(videos / pool[1]["path"]), "A", "y")
    p = cli(["annotate", "--stats", str(labels), "--against", "oracle", "--preset", "tiny"], tmp_path)
    s = json.loads(p.stdout)
    assert s["between_annotators"][0]["agreement"] == 1.0 and set(s["with_reference"]) == {"x", "y"}
    assert "x vs y: agreement 1.000 on 1 shared items" in p.stderr
    p = cli(["annotate", "--stats", str(labels), "--against", "critic", *TINY], tmp_path)  # the real small critic
    s = json.loads(p.stdout)
    assert s["with_reference"]["x"]["shared"] == 1 and s["with_reference"]["x"] == s["with_reference"]["y"]
    p = cli(["annotate", "--videos", str(videos)], tmp_path, check=False)
    assert p.returncode == 2 and "needs --out" in p.stderr


def test_a_real_runs_items_are_the_pairs_its_critic_judged(tmp_path):
    cli(["run", "--preset", "tiny", "--out", "r", "rounds.num_rounds=1", "sampling.videos_per_prompt=3"], tmp_path)
    run = tmp_path / "r"
    _, items = items_from_run(run, 1)
    ledger = Ledger.open(run, readonly=True)
    prompts = dict(ledger.prompts())
    judged = {item_id(prompts[r["prompt_id"]], (run / r["video_a"], run / r["video_b"]), r["dimension"])
              for r in ledger.judgments(1)}
    ledger.close()
    assert len(judged) == 2 * 3 and {it.id for it in items} == judged
