"""What the annotation app offers: items (a prompt, one or two videos, a dimension) from a run, a video folder or a
manifest, each with a stable id and a presentation order drawn per item (so human labels carry no position bias).

- `--run RUN_DIR`: round k's training samples, the judgments the loop's critic would make of them
  (`loop.judging.wanted_judgments`: every pair of one prompt's videos, or every video in pointwise mode, on each
  of the run's judging dimensions).
- `--videos DIR`: a `prompts.jsonl` folder (`dualipo world sample` / `critic videos` layout): every pair of one
  prompt's videos (pairwise) or every video (pointwise), on the given dimensions.
- `--videos MANIFEST.jsonl`: one item per line, `{prompt, video_a, video_b[, dimension]}` or
  `{prompt, video[, dimension]}`, paths relative to the manifest's folder.

Every video must lie under the source's folder (the run directory, the video folder, the manifest's folder):
the app serves nothing else.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from dualipo.critics.prompts import PAIR_VERDICTS, POINT_VERDICTS, QUESTIONS
from dualipo.jsonl import read_jsonl


@dataclass(frozen=True)
class Item:
    id: str
    prompt: str
    videos: tuple[str, ...]  # absolute paths in presentation order: (A, B) pairwise, (v,) pointwise
    dimension: str
    swapped: bool = False  # pairwise: A is the source's second video

    @property
    def mode(self) -> str:
        return "pairwise" if len(self.videos) == 2 else "pointwise"

    @property
    def options(self) -> tuple[str, ...]:
        return PAIR_VERDICTS if self.mode == "pairwise" else POINT_VERDICTS


def item_id(prompt: str, videos, dimension: str) -> str:
    """Stable across presentation orders: the same prompt, videos (in any order) and dimension give one id."""
    key = json.dumps([prompt, sorted(str(Path(v).resolve()) for v in videos), dimension])
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def make_item(prompt: str, videos, dimension: str, seed: int = 0) -> Item:
    """An item with its presentation order drawn from (its id, seed): A / B swapped for about half the pairs."""
    if dimension not in QUESTIONS:
        raise ValueError(f"unknown dimension {dimension!r}; expected one of {', '.join(QUESTIONS)}")
    videos = tuple(str(Path(v).resolve()) for v in videos)
    iid = item_id(prompt, videos, dimension)
    swapped = len(videos) == 2 and hashlib.sha256(f"{iid}:{seed}".encode()).digest()[0] % 2 == 1
    return Item(iid, prompt, videos[::-1] if swapped else videos, dimension, swapped)


def _check_under(root: Path, items: list[Item]) -> list[Item]:
    root = root.resolve()
    for it in items:
        for v in it.videos:
            if not Path(v).is_relative_to(root):
                raise ValueError(f"video {v} is outside {root}; the annotation app serves only files under it")
            if not Path(v).is_file():
                raise ValueError(f"video {v} does not exist")
    if not items:
        raise ValueError("no items to label")
    return items


def _dedup(items: list[Item]) -> list[Item]:
    seen: dict[str, Item] = {}
    for it in items:
        seen.setdefault(it.id, it)
    return list(seen.values())


def items_from_run(run_dir: str | Path, round_: int = 1, seed: int = 0, mode: str | None = None,
                   dimensions=None) -> tuple[Path, list[Item]]:
    """The pairs (or videos) the run's critic judges in round `round_`, from its ledger (its judging mode and
    dimensions unless given; pointwise when it judges pairs from pointwise scores, as the small preset does)."""
    from dualipo.ledger import Ledger
    from dualipo.loop.judging import wanted_judgments

    run_dir = Path(run_dir)
    ledger = Ledger.open(run_dir, readonly=True)
    try:
        judging = ledger.config().get("judging", {})
        prompts = dict(ledger.prompts())
        rows = ledger.videos(round_, "train")
    finally:
        ledger.close()
    if not rows:
        raise ValueError(f"{run_dir} has no sampled videos in round {round_} (run `dualipo run` first, or pick "
                         f"another --round)")
    by_prompt: dict[str, list[str]] = {}
    for r in rows:
        by_prompt.setdefault(r["prompt_id"], []).append(str(run_dir / r["path"]))
    if mode is None:  # a critic that judges pairs from pointwise scores learns from pointwise labels
        mode = "pointwise" if judging.get("pairs_from") == "scores" else judging.get("mode", "pairwise")
    dims = tuple(dimensions or judging.get("dimensions", ("overall",)))
    items = [make_item(prompts[pid], (a, b) if b else (a,), d, seed)
             for pid, paths in by_prompt.items() for d, a, b in wanted_judgments(paths, mode, dims)]
    return run_dir, _check_under(run_dir, items)


def items_from_videos(source: str | Path, mode: str = "pairwise", dimensions=("overall",),
                      seed: int = 0) -> tuple[Path, list[Item]]:
    """Items from a `prompts.jsonl` folder or a JSONL manifest (see the module docstring)."""
    from dualipo.critic_training.seed import read_pool
    from dualipo.loop.judging import wanted_judgments

    source = Path(source)
    if source.is_dir():
        items = [make_item(prompt, (a, b) if b else (a,), d, seed) for prompt, paths in read_pool(source).items()
                 for d, a, b in wanted_judgments(paths, mode, dimensions)]
        return source, _check_under(source, _dedup(items))
    if not source.is_file():
        raise ValueError(f"{source} is neither a folder with prompts.jsonl nor a manifest file")
    root, items = source.parent, []
    for n, r in read_jsonl(source, "manifest"):
        keys = [k for k in ("video_a", "video_b", "video") if k in r]
        vids = [r[k] for k in keys]
        if not isinstance(r.get("prompt"), str) or keys not in (["video_a", "video_b"], ["video"]) or \
                not all(isinstance(v, str) for v in vids):
            raise ValueError(f"{source}:{n}: expected {{prompt, video_a, video_b}} or {{prompt, video}} strings")
        dims = [r["dimension"]] if "dimension" in r else list(dimensions)
        items += [make_item(r["prompt"], [root / v for v in vids], d, seed) for d in dims]
    return root, _check_under(root, _dedup(items))
