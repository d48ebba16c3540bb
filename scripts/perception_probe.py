"""How much of what the oracle reads in a video can a small model learn to see? (issue: the critic's perception)

    python scripts/perception_probe.py linear TRAIN_DIR EVAL_DIR [--critic PATH ...]
    python scripts/perception_probe.py cnn TRAIN_DIR [TRAIN_DIR ...] --eval EVAL_DIR [--target motion_level]
        [--condition [colour_motion|prompt]] [--epochs 40]
    python scripts/perception_probe.py cnn TRAIN_DIR [TRAIN_DIR ...] --eval EVAL_DIR --target scores|levels
        --pairs PAIRS.jsonl --condition prompt [--label-noise 0.1]

The directories are `dualipo critic videos` outputs (prompts.jsonl + videos); the labels are the oracle's reading
of each video, which only measures here. `linear`: linear probes (L2 chosen on a fifth of the train set) of the
oracle's motion reading (left / right / up / down / static / growing / shrinking / none) and of the colours it
sees, from a critic's merged vision tokens, from its language model's states over those tokens (the m-RoPE
positions the critic uses, no text), and from the critic's input frames pooled to 12 x 12 (a reference). `cnn`: a
small 3D CNN (about 0.25 M parameters) trained from scratch for one target on the videos' frames, a specialist
standing in for the best perceiver of its size: `motion_reading` (the class above) or `motion_level` (the
oracle's motion score, right or wrong against the prompt: what the critic's motion verdict needs), `scores`
(the oracle's scores on the held-out pairs' dimensions, regressed) or `levels` (the same as the seed annotators'
Good / Normal / Bad, with `--label-noise` as the seed set's; the score is the expected level); the last two are
graded as a judge of the held-out pairs PAIRS.jsonl of EVAL_DIR's videos, a `dualipo critic seed` file: the pair
goes to the higher predicted score, a tie within the oracle's tie margin. With `--condition` (`colour_motion`) it
is also given the prompt's colour and motion as constant one-hot channels (the oracle reads the motion of the
asked colour's blobs); `--condition prompt` gives everything the prompt asks (colours, shapes, count, motion,
speed, relation, background). Prints one JSON line per evaluation and a summary line.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from dualipo.config import BACKGROUNDS, COLOURS, MOTIONS, SHAPES, preset_small
from dualipo.toy.oracle import score, verdict
from dualipo.toy.seed_labels import POINT_LABELS, TIE_MARGIN, level_index
from dualipo.toy.world import RELATIONS, SPEEDS, parse_prompt
from dualipo.video import read_video

READINGS = (*MOTIONS, "none")
SCORE_DIMS = ("overall", "alignment", "motion", "consistency")  # the held-out pairs' dimensions


def load(dirs: list[Path]) -> list[dict]:
    """One item per video: its prompt, frames and resolved path, and the oracle's reading (motion class, colours
    seen, motion score right or wrong, its scores on SCORE_DIMS)."""
    recs = [(d, json.loads(line)) for d in dirs for line in (d / "prompts.jsonl").read_text().splitlines()
            if line.strip()]
    items = []
    for d, r in tqdm(recs, desc="reading videos", leave=False):
        v = read_video(d / r["path"])
        s = score(r["prompt"], v)
        items.append({"prompt": r["prompt"], "video": v, "path": (d / r["path"]).resolve(),
                      "reading": s.seen["motion"],
                      "colours": [any(o.split()[0] == c for o in s.seen["objects"]) for c in COLOURS],
                      "motion_level": int(s.dims["motion"] >= 0.5),
                      "scores": [s.get(dim) for dim in SCORE_DIMS]})
    return items


def fit_linear(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, yte: np.ndarray, lam: float) -> float:
    """Accuracy on (xte, yte) of an L2-regularised multinomial logistic regression fitted by L-BFGS on standardised
    (xtr, ytr)."""
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    a, b = torch.tensor((xtr - mu) / sd).float(), torch.tensor((xte - mu) / sd).float()
    n_cls = int(max(ytr.max(), yte.max())) + 1
    W = torch.zeros(a.shape[1], n_cls, requires_grad=True)
    bias = torch.zeros(n_cls, requires_grad=True)
    opt = torch.optim.LBFGS([W, bias], max_iter=300, line_search_fn="strong_wolfe")
    target = torch.tensor(ytr)

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(a @ W + bias, target) + lam * (W ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(((b @ W + bias).argmax(1) == torch.tensor(yte)).float().mean())


def linear_probe(xtr, ytr, xte, yte, lams=(1e-4, 1e-3, 1e-2, 1e-1)) -> dict:
    """The L2 weight chosen on a validation fifth of the train set, then refitted on all of it."""
    idx = np.random.default_rng(0).permutation(len(ytr))
    va, tr = idx[:max(1, len(idx) // 5)], idx[max(1, len(idx) // 5):]
    lam = max(lams, key=lambda l: fit_linear(xtr[tr], ytr[tr], xtr[va], ytr[va], l))
    return {"accuracy": round(fit_linear(xtr, ytr, xte, yte, lam), 3), "l2": lam}


@torch.no_grad()
def critic_features(items: list[dict], critic_path: str) -> dict[str, np.ndarray]:
    """Per video, flattened: the critic's merged vision tokens, its language model's last states over them, and its
    input frames pooled to 12 x 12."""
    from dualipo.critics.qwen_vl import load_model
    from dualipo.critics.vision_inputs import VisionSpec, load_frames, patchify, resize

    cfg = replace(preset_small().critic, path=critic_path, device="cpu", dtype="float32")
    model, _ = load_model(cfg)
    spec = VisionSpec.from_model(model.config, cfg.num_frames, cfg.image_size)
    out = {"vision": [], "language_model": [], "pixels": []}
    for it in tqdm(items, desc=f"critic {critic_path or 'random'}", leave=False):
        frames = load_frames(it["video"], spec)
        patches, grid = patchify(frames, spec)
        tokens = model.model.visual(patches, grid_thw=grid).pooler_output
        t, h, w = int(grid[0, 0]), int(grid[0, 1]) // spec.merge_size, int(grid[0, 2]) // spec.merge_size
        pos = torch.stack(torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij"))
        states = model.model.language_model(inputs_embeds=tokens[None], position_ids=pos.reshape(3, 1, -1))
        out["vision"].append(tokens.flatten().numpy())
        out["language_model"].append(states.last_hidden_state[0].flatten().numpy())
        out["pixels"].append(nn.functional.adaptive_avg_pool2d(resize(frames, spec), 12).flatten().numpy())
    return {k: np.stack(v) for k, v in out.items()}


def cmd_linear(args) -> dict:
    train, held = load([args.train]), load([args.eval])
    y = {s: np.array([READINGS.index(i["reading"]) for i in items]) for s, items in (("tr", train), ("te", held))}
    counts = Counter(i["reading"] for i in held)
    result = {"train_videos": len(train), "eval_videos": len(held), "readings_eval": dict(counts),
              "majority": round(counts.most_common(1)[0][1] / len(held), 3)}
    for path in args.critic:
        both = critic_features(train + held, path)  # the critic loaded once for both sets
        ftr, fte = {k: v[:len(train)] for k, v in both.items()}, {k: v[len(train):] for k, v in both.items()}
        for name in ftr:
            colours = [linear_probe(ftr[name], np.array([i["colours"][c] for i in train], dtype=int),
                                    fte[name], np.array([i["colours"][c] for i in held], dtype=int))["accuracy"]
                       for c in range(len(COLOURS))
                       if len({i["colours"][c] for i in train}) == 2 and len({i["colours"][c] for i in held}) == 2]
            result[f"{path}:{name}"] = {"motion_reading": linear_probe(ftr[name], y["tr"], fte[name], y["te"]),
                                        "colours_mean": round(float(np.mean(colours)), 3) if colours else None}
            print(json.dumps({path: name, **result[f"{path}:{name}"]}), flush=True)
    return result


def prompt_vector(prompt: str, condition: str) -> torch.Tensor:
    """One-hot groups of what the prompt asks: `colour_motion` the (first) object's colour and the motion;
    `prompt` also the second object's colour, both shapes, two of a kind, the speed, the relation and the
    background (an empty group where the prompt asks nothing of it)."""
    scene = parse_prompt(prompt)
    groups = [(COLOURS, scene.obj.colour), (MOTIONS, scene.motion)]
    if condition == "prompt":
        other = scene.other
        groups += [(COLOURS, other and other.colour), (SHAPES, scene.obj.shape), (SHAPES, other and other.shape),
                   ((2,), scene.count), (SPEEDS, scene.speed), (RELATIONS, scene.relation),
                   (BACKGROUNDS, scene.background)]
    return torch.tensor([float(v == asked) for vocab, asked in groups for v in vocab])


def cnn_inputs(items: list[dict], condition: str | None) -> torch.Tensor:
    """(N, C, T, H, W) frames in [0, 1]; with `condition`, the prompt's `prompt_vector` as constant channels."""
    xs = []
    for it in items:
        x = torch.from_numpy(it["video"].frames.copy()).permute(3, 0, 1, 2).float() / 255.0
        if condition:
            vec = prompt_vector(it["prompt"], condition)
            x = torch.cat([x, vec[:, None, None, None].expand(-1, *x.shape[1:])])
        xs.append(x)
    return torch.stack(xs)


def judge_pairs(predicted: dict, pairs: list[dict], tie_margin: float = TIE_MARGIN) -> dict:
    """Grade predicted scores as a judge of oracle-labelled pairs: the verdict is the oracle's rule applied to the
    predictions (the higher score, a tie within `tie_margin`). `predicted[video][dimension]` -> score; each pair has
    video_a, video_b (keys of `predicted`), dimension and the oracle's label. Decisive pairs (label A or B):
    `decisive_accuracy` (a predicted tie is wrong, as `critic eval` counts it) and `decisive_ordered` (the
    higher prediction is the better video: a judge that never calls a tie), also per dimension."""
    right = right_decisive = 0
    ordered: dict[str, list[int]] = {}  # dimension -> per decisive pair, is the higher prediction the better video
    for p in pairs:
        a, b = predicted[p["video_a"]][p["dimension"]], predicted[p["video_b"]][p["dimension"]]
        agrees = verdict(a, b, tie_margin) == p["label"]
        right += agrees
        if p["label"] != "tie":
            right_decisive += agrees
            ordered.setdefault(p["dimension"], []).append(int((a > b) == (p["label"] == "A")))
    n = sum(len(v) for v in ordered.values())
    return {"pairs": len(pairs), "decisive_pairs": n, "pair_accuracy": round(right / max(1, len(pairs)), 3),
            "decisive_accuracy": round(right_decisive / max(1, n), 3),
            "decisive_ordered": round(sum(map(sum, ordered.values())) / max(1, n), 3),
            "decisive_ordered_by_dimension": {d: round(sum(v) / len(v), 3) for d, v in sorted(ordered.items())}}


def by_video(items: list[dict], scores) -> dict:
    """`judge_pairs`'s `predicted`: each item's path -> {dimension: score} from per-item rows over SCORE_DIMS."""
    return {it["path"]: dict(zip(SCORE_DIMS, row)) for it, row in zip(items, scores)}


def load_pairs(path: Path, items: list[dict]) -> list[dict]:
    """The pairs of `path` with their videos as keys of `items` (paths relative to the pairs file's folder or to
    the working directory)."""
    known = {it["path"] for it in items}
    pairs = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        p = json.loads(line)
        for k in ("video_a", "video_b"):
            q = Path(p[k])
            found = [c for c in ((path.parent / q).resolve(), q.resolve()) if c in known]
            if not found:
                raise SystemExit(f"{path}: pair video {p[k]} is not one of the --eval videos")
            p[k] = found[0]
        pairs.append(p)
    return pairs


def specialist(channels: int, frames: int, side: int, n_cls: int) -> nn.Module:
    """Three 3x3x3 conv blocks, each halving the frame side, then a linear read-out."""
    return nn.Sequential(
        nn.Conv3d(channels, 32, 3, padding=1), nn.GELU(), nn.MaxPool3d((1, 2, 2)),
        nn.Conv3d(32, 64, 3, padding=1), nn.GELU(), nn.MaxPool3d((1, 2, 2)),
        nn.Conv3d(64, 64, 3, padding=1), nn.GELU(), nn.MaxPool3d((1, 2, 2)),
        nn.Flatten(), nn.Dropout(0.3), nn.Linear(64 * frames * (side // 8) ** 2, n_cls))


def noisy_levels(y: torch.Tensor, rate: float, seed: int) -> torch.Tensor:
    """Each level replaced, with probability `rate`, by one of the other two at random (the seed set's noise)."""
    g = torch.Generator().manual_seed(seed)
    flip = torch.rand(y.shape, generator=g) < rate
    return torch.where(flip, (y + torch.randint(1, len(POINT_LABELS), y.shape, generator=g)) % len(POINT_LABELS), y)


def cmd_cnn(args) -> dict:
    torch.manual_seed(args.seed)
    train, held = load(args.train), load([args.eval])
    judged = args.target in ("scores", "levels")  # per-video scores, graded as a judge of the held-out pairs
    if judged and args.pairs is None:
        raise SystemExit(f"--target {args.target} needs --pairs (held-out pairs of the --eval videos)")
    if args.label_noise and args.target != "levels":
        raise SystemExit("--label-noise is for --target levels (the seed annotators' three levels)")
    pairs = load_pairs(args.pairs, held) if judged else None
    n_levels = len(POINT_LABELS)

    def label(item: dict):
        if args.target == "scores":
            return item["scores"]
        if args.target == "levels":
            return [level_index(v) for v in item["scores"]]
        return READINGS.index(item["reading"]) if args.target == "motion_reading" else item["motion_level"]

    ytr, yte = torch.tensor([label(i) for i in train]), torch.tensor([label(i) for i in held])
    if args.label_noise:
        ytr = noisy_levels(ytr, args.label_noise, args.seed)
    xtr, xte = cnn_inputs(train, args.condition), cnn_inputs(held, args.condition)
    outputs = {"scores": len(SCORE_DIMS), "levels": len(SCORE_DIMS) * n_levels, "motion_reading": len(READINGS),
               "motion_level": 2}[args.target]
    net = specialist(xtr.shape[1], xtr.shape[2], xtr.shape[3], outputs)
    opt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=0.05)
    result = {"target": args.target, "condition": args.condition, "label_noise": args.label_noise,
              "train_videos": len(ytr), "eval_videos": len(yte),
              "parameters": sum(p.numel() for p in net.parameters()), "curve": []}
    if judged:
        # the labels' own rule: a check, all 1.0
        result["oracle_on_pairs"] = judge_pairs(by_video(held, [it["scores"] for it in held]), pairs)
    else:
        result["majority"] = round(Counter(yte.tolist()).most_common(1)[0][1] / len(yte), 3)

    def loss_fn(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if args.target == "scores":
            return nn.functional.mse_loss(out.sigmoid(), y)
        if args.target == "levels":
            return nn.functional.cross_entropy(out.reshape(-1, n_levels), y.reshape(-1))
        return nn.functional.cross_entropy(out, y)

    def predicted_scores(out: torch.Tensor) -> torch.Tensor:
        """Per video and dimension, in [0, 1]: the regressed score, or the expected level (Bad 0 .. Good 1)."""
        if args.target == "scores":
            return out.sigmoid()
        probs = out.reshape(len(out), len(SCORE_DIMS), n_levels).softmax(-1)
        return probs @ torch.linspace(0, 1, n_levels)

    true_tr, true_te = (torch.tensor([i["scores"] for i in items]) for items in (train[:512], held))
    for epoch in range(1, args.epochs + 1):
        net.train()
        for b in torch.randperm(len(ytr)).split(32):
            x = xtr[b]
            if not args.condition and torch.rand(()) < 0.5:
                x = x[:, torch.randperm(3)]  # unconditioned, motion does not depend on which colour
            loss = loss_fn(net(x), ytr[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
        if epoch % 5 == 0 or epoch == args.epochs:
            net.eval()
            with torch.no_grad():
                out_te, out_tr = net(xte), net(xtr[:512])
            if judged:
                pred_te = predicted_scores(out_te)
                point = {"train_mse": round(float(nn.functional.mse_loss(predicted_scores(out_tr), true_tr)), 4),
                         "eval_mse": round(float(nn.functional.mse_loss(pred_te, true_te)), 4),
                         **judge_pairs(by_video(held, pred_te.tolist()), pairs)}
            else:
                point = {"train_accuracy": round(float((out_tr.argmax(1) == ytr[:512]).float().mean()), 3),
                         "eval_accuracy": round(float((out_te.argmax(1) == yte).float().mean()), 3)}
            result["curve"].append({"epoch": epoch, **point})
            print(json.dumps(result["curve"][-1]), flush=True)
    for key in ("decisive_ordered", "decisive_accuracy") if judged else ("eval_accuracy",):
        last = [c[key] for c in result["curve"][-4:]]
        result[f"{key}_last_evaluations"] = round(float(np.mean(last)), 3)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    lin = sub.add_parser("linear")
    lin.add_argument("train", type=Path)
    lin.add_argument("eval", type=Path)
    lin.add_argument("--critic", nargs="+", default=["shipped"], help="critic paths ('shipped' = the package's)")
    cnn = sub.add_parser("cnn")
    cnn.add_argument("train", type=Path, nargs="+")
    cnn.add_argument("--eval", type=Path, required=True)
    cnn.add_argument("--target", choices=("motion_reading", "motion_level", "scores", "levels"),
                     default="motion_reading")
    cnn.add_argument("--condition", nargs="?", const="colour_motion", choices=("colour_motion", "prompt"),
                     help="give the prompt's colour and motion (or, `prompt`, all it asks) as channels")
    cnn.add_argument("--pairs", type=Path, help="held-out pairs of the --eval videos (--target scores / levels)")
    cnn.add_argument("--label-noise", type=float, default=0.0,
                     help="--target levels: share of train labels replaced by another level (the seed set's 0.1)")
    cnn.add_argument("--epochs", type=int, default=40)
    cnn.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    for d in [*(args.train if args.command == "cnn" else [args.train]), args.eval]:
        if not (d / "prompts.jsonl").exists():
            raise SystemExit(f"{d}: no prompts.jsonl (make it with `dualipo critic videos`)")
    result = cmd_linear(args) if args.command == "linear" else cmd_cnn(args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
