"""Does critic self-refinement (SRPO) beat spending the same compute on more seed training? (issue: critic
self-refinement, the honest experiment)

For one generator (the shipped base, or the base with preference-trained adapters merged in order):
1. videos: 4 samples per prompt of `--pool-prompts` train prompts (the unlabelled pool) and of
   `--heldout-prompts` held-out prompts (the evaluation set);
2. held-out pairs with the oracle's noise-free labels (`critic seed critic_cold.seed_noise=0`: evaluation only);
3. the pool's pairs (random pairs within a prompt, dimension drawn uniformly) judged by the starting critic:
   K paths per order, both orders (the oracle's labels of the pool are kept beside them for the analysis only:
   pseudo-label accuracy per dimension and per certainty bin);
4. per training seed, two arms from the same starting critic with the same steps and batch size:
   `refine` (`critic_training.refine.refine_critic`: consistency filter, certainty, SFT on the majority rationales mixed
   with the seed set) and `control` (the same number of SFT steps on the seed set alone);
5. every critic (start, each arm and seed) is evaluated on the held-out pairs in both orders (greedy, CoT).
Everything is cached in OUT/NAME/, so a rerun continues. The seed set (oracle-labelled renders and corruptions,
the loop's default) is shared in OUT/seed/.

    python benchmarks/srpo_refinement.py --out runs/srpo --name base
    python benchmarks/srpo_refinement.py --out runs/srpo --name r2 --adapters A1 A2 [KEY=VALUE overrides]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from dualipo.config import build_config
from dualipo.critic_training.seed import SEED_DIMENSIONS as DIMS
from dualipo.critic_training.seed import load_seed, write_seed
from dualipo.critic_training.toy_seed import oracle_seed_set, rendered_seed_set


def _generator_dir(cfg, adapters: list[str], out: Path) -> str:
    """The generator with `adapters` merged in order, saved once as a pipeline directory ('shipped' if none)."""
    if not adapters:
        return cfg.generator.path
    d = out / "generator"
    if not (d / "model_index.json").is_file():
        from dualipo.generators import build_generator

        gen = build_generator(cfg)
        for a in adapters:
            gen.load_lora(a)
            gen.merge_lora()
        gen.save_pretrained(d)
    return str(d)


def _videos(cfg, out: Path, n_prompts: int, split: str, seed: int) -> Path:
    from dualipo.critic_training.toy_seed import write_generator_samples

    if not (out / "prompts.jsonl").is_file():
        write_generator_samples(cfg, out, n_prompts, 4, split, seed)
    return out


def _judge_pool(cfg, pool_file: Path, out: Path):
    """The starting critic's judgments of the pool (cached as JSONL); the oracle label rides along for analysis."""
    from dualipo.critics import build_critic
    from dualipo.critics.voting import Judgment
    from dualipo.jsonl import read_jsonl, write_jsonl

    f = out / "pool_judgments.jsonl"
    if not f.is_file():
        records = load_seed(pool_file)
        critic = build_critic(cfg)
        torch.manual_seed(0)
        js = []
        from tqdm import tqdm

        for i in tqdm(range(0, len(records), 8), desc="judging the pool", unit="batch"):
            chunk = records[i:i + 8]
            js += critic.judge_many([(r.prompt, r.videos[0], r.videos[1], r.dimension) for r in chunk])
        write_jsonl(f, ({"label": r.extra["clean_label"], **j.to_dict()} for r, j in zip(records, js)))
    rows = [r for _, r in read_jsonl(f)]
    return [Judgment.from_dict(r) for r in rows], [r["label"] for r in rows]


def pseudo_label_table(cfg, js, labels) -> dict:
    """Accuracy of the refinement's pseudo-labels against the oracle, per dimension and per certainty bin
    (after the consistency filter), and of what refinement keeps."""
    from dualipo.critics.consistency import filter_judgment
    from dualipo.critic_training.certainty import keep

    ct = cfg.critic_refine
    rows = []
    for j, label in zip(js, labels):
        f, _ = filter_judgment(j, ct.consistency)
        if f.verdict in ("A", "B"):
            rows.append((f.dimension, f.certainty, f.verdict == label,
                         keep(f.certainty, "vote", ct.certainty_threshold, ct.pce_threshold)))
    out = {"labelled": len(rows), "of": len(js),
           "accuracy": float(np.mean([r[2] for r in rows])) if rows else None,
           "kept": sum(r[3] for r in rows),
           "kept_accuracy": float(np.mean([r[2] for r in rows if r[3]])) if any(r[3] for r in rows) else None,
           "per_dimension": {}, "per_certainty_bin": {}}
    for d in DIMS:
        sub = [r for r in rows if r[0] == d]
        kept = [r for r in sub if r[3]]
        out["per_dimension"][d] = {"n": len(sub), "accuracy": float(np.mean([r[2] for r in sub])) if sub else None,
                                   "kept": len(kept),
                                   "kept_accuracy": float(np.mean([r[2] for r in kept])) if kept else None}
    for lo, hi in ((0.5, 0.6), (0.6, 0.75), (0.75, 0.9), (0.9, 1.01)):
        sub = [r for r in rows if lo <= r[1] < hi]
        out["per_certainty_bin"][f"[{lo},{min(hi, 1.0)}]"] = {
            "n": len(sub), "accuracy": float(np.mean([r[2] for r in sub])) if sub else None}
    return out


def _evaluate(cfg, critic_path: str, heldout: list, out: Path) -> dict:
    from dualipo.critics import build_critic
    from dualipo.critic_training.evaluate import evaluate_pairs

    f = out / "eval.json"
    if not f.is_file():
        critic = build_critic(replace(cfg, critic=replace(cfg.critic, path=critic_path)))
        res = evaluate_pairs(critic, heldout, num_votes=1, chain_of_thought=True)
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(res, indent=1))
    return json.loads(f.read_text())


def _summarize(result: dict) -> None:
    """Each arm's mean accuracy and standard error over seeds, and refinement minus control (paired by seed)."""
    for arm, runs in result["arms"].items():
        acc = np.array([r["accuracy"] for r in runs])
        result[f"{arm}_mean"] = float(acc.mean())
        result[f"{arm}_se"] = float(acc.std(ddof=1) / np.sqrt(len(acc))) if len(acc) > 1 else None
    if "refine" in result["arms"] and "control" in result["arms"]:
        diffs = [r["accuracy"] - c["accuracy"] for r, c in zip(result["arms"]["refine"], result["arms"]["control"])]
        result["refine_minus_control"] = float(np.mean(diffs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--adapters", nargs="*", default=[])
    ap.add_argument("--pool-prompts", type=int, default=128)
    ap.add_argument("--pool-pairs", type=int, default=384)
    ap.add_argument("--heldout-prompts", type=int, default=64)
    ap.add_argument("--heldout-pairs", type=int, default=300)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--seed-pairs", type=int, default=600, help="the seed set: oracle-labelled renders, 10%% noise")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_intermixed_args()
    torch.set_num_threads(a.threads)
    out = Path(a.out) / a.name
    out.mkdir(parents=True, exist_ok=True)
    cfg = build_config("small", overrides=["critic_refine.steps=150", "critic_refine.batch_size=16",
                                           "critic_cold.batch_size=16", "judging.temperature=1.0", *a.overrides])
    t0 = time.time()
    gen_cfg = replace(cfg, generator=replace(cfg.generator, path=_generator_dir(cfg, a.adapters, out)))
    pool_dir = _videos(gen_cfg, out / "pool", a.pool_prompts, "train", 50 + len(a.adapters))
    held_dir = _videos(gen_cfg, out / "heldout", a.heldout_prompts, "eval", 70 + len(a.adapters))
    if not (out / "pool.jsonl").is_file():  # random pairs, uniform dimension (focus 0): no oracle in the choice
        write_seed(oracle_seed_set([pool_dir], a.pool_pairs, DIMS, 0.0, 1, focus=0.0), out / "pool.jsonl")
    if not (out / "heldout.jsonl").is_file():
        write_seed(oracle_seed_set([held_dir], a.heldout_pairs, DIMS, 0.0, 7), out / "heldout.jsonl")
    heldout = load_seed(out / "heldout.jsonl")
    seed_file = rendered_seed_set(cfg.world, Path(a.out) / "seed", a.seed_pairs, 0.1)
    js, labels = _judge_pool(cfg, out / "pool.jsonl", out)
    t_data = time.time() - t0
    result = {"name": a.name, "adapters": a.adapters, "overrides": a.overrides, "data_seconds": round(t_data),
              "pseudo_labels": pseudo_label_table(cfg, js, labels),
              "start": _evaluate(cfg, cfg.critic.path, heldout, out / "start"), "arms": {}}
    from dualipo.critic_training.cold_start import cold_start
    from dualipo.critic_training.refine import refine_critic

    for s in a.seeds:
        scfg = replace(cfg, critic_cold=replace(cfg.critic_cold, seed=s),
                       critic_refine=replace(cfg.critic_refine, seed=s))
        for arm in ("refine", "control"):
            d = out / f"{arm}_seed{s}"
            t = time.time()
            if arm == "refine":
                final, counts = refine_critic(scfg, js, d, seed_file)
            else:
                ccfg = replace(scfg, critic_cold=replace(scfg.critic_cold, num_steps=cfg.critic_refine.steps))
                final, counts = cold_start(ccfg, seed_file, d), {}
            res = _evaluate(cfg, str(final), heldout, d)
            result["arms"].setdefault(arm, []).append({"seed": s, "accuracy": res["accuracy"],
                                                       "accuracy_decisive": res["accuracy_decisive"],
                                                       "per_dimension": res["per_dimension"],
                                                       "abstention_rate": res["abstention_rate"],
                                                       "counts": counts, "seconds": round(time.time() - t)})
            (out / "result.json").write_text(json.dumps(result, indent=1))
    _summarize(result)
    (out / "result.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k not in ("arms",)}, indent=1))


if __name__ == "__main__":
    main()
