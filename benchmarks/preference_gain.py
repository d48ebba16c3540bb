"""Does preference training raise the small generator's held-out oracle score? Every arm, per round, per seed.

One arm = one recipe run for R rounds from the shipped base. A round: sample N videos for each of P train
prompts from the current policy -> label them -> select training items -> train a fresh LoRA adapter -> merge
it (the reference moves forward) -> score the held-out prompts with the oracle (fixed prompts and seeds).

Labels (`--labels`): `oracle` (the perfect critic: the upper bound), `critic` (the shipped small critic's
K-vote judgments over every pair of a prompt's samples, certainty filtered), `web` (no labels: the prompts' own
renders captioned like the web corpus the base learned from, `world.web`: the continued-pretraining control, what a
user without a critic would do) or `curated` (the renders with their true prompts: curated data, a reference).
Selection (`--select`): `best_vs_worst` (one DPO pair per prompt), `all_pairs` (every pair whose score gap is at
least `--gap`), `best` (the best sample per prompt, for SFT on best-of-N), `points` (KTO: samples above / below the prompt's mean by `--gap`; with critic labels,
samples that won more / fewer of their confident comparisons than they lost, as `dualipo run` does).
The oracle never labels anything in a `critic` arm: it only evaluates.

    python benchmarks/preference_gain.py run --out runs/pg --arm NAME --seed 0 [--rounds 3] [--prompts 256]
        [--n 4] [--labels oracle] [--select all_pairs] [--gap 0.1] [--eval-prompts 64] [KEY=VALUE overrides]
    python benchmarks/preference_gain.py summary --out runs/pg --oracle-arm A --critic-arm B --web-control-arm C
        --curated-arm D
        [--kto-arm K] [--kto-critic-arm L]
    python benchmarks/preference_gain.py headroom --out runs/pg --seed 0 [--prompts 128] [--n 4]

`headroom` scores the base's round-1 samples (those the arms share) with the oracle, per dimension: the mean
sample, the best of N on that dimension, and the sample that is best overall (what a policy that always made its
best sample would score on the train prompts).

Each (arm, seed) writes OUT/ARM/seedS.json when done (and resumes a round's training after an interruption).
Round-1 samples of the base are shared by every arm with the same seed, prompts and N (OUT/_samples/).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from dualipo.config import build_config
from dualipo.generators import build_generator
from dualipo.generators.evaluate import evaluate_generator
from dualipo.preferences import real_videos_from_world
from dualipo.toy.oracle import score
from dualipo.toy.corrupt import web_captions
from dualipo.toy.world import prompt_pools, render_prompt
from dualipo.trainer import build_cache, train_generator
from dualipo.video import Video


def _cached(cache: Path, seeds, fps: int) -> list[Video] | None:
    """The round-1 samples of the base from a cache of the same seed and N, or None; a cache of more prompts
    holds these as its prefix (the same prompts, the same seeds)."""
    for f in sorted(cache.parent.glob(cache.name.split("_p")[0] + "_p*_n*.npz")):
        z = np.load(f)
        if list(z["seeds"][:len(seeds)]) == list(seeds) and f.name.endswith(cache.name.split("_")[-1]):
            return [Video(x, fps) for x in z["frames"][:len(seeds)]]
    return None


def _sample_seeds(seed: int, rnd: int, num_prompts: int, n: int) -> list[int]:
    """The noise seeds of round `rnd`'s N samples per prompt (the same for every arm of a seed)."""
    return [10_000 * seed + 1000 * rnd + k for _ in range(num_prompts) for k in range(n)]


def _sample(get_gen, cfg, prompts, seeds, cache: Path | None):
    """Sample with `get_gen()`, or read the round-1 samples of the base from the cache (and fill it); the
    generator is only asked for when the samples are not cached."""
    w = cfg.world
    if cache is not None and (videos := _cached(cache, seeds, w.fps)) is not None:
        return videos
    videos = get_gen().sample(prompts, seeds, num_frames=w.num_frames, height=w.height, width=w.width,
                        batch_size=cfg.sampling.batch_size)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, frames=np.stack([v.frames for v in videos]), seeds=np.array(seeds))
    return videos


def _label(labels: str, prompt: str, group: list[Video], cfg, critic):
    """(one score per sample, higher = better; confident (winner, loser) index pairs or None)."""
    if labels == "oracle":
        return [score(prompt, v).overall for v in group], None
    if labels == "critic":
        return critic_preferences(critic, cfg, prompt, group)
    raise ValueError(labels)


def critic_preferences(critic, cfg, prompt: str, group: list[Video]):
    """The critic judges every pair of the group (K votes, both orders); confident judgments give (winner, loser)
    pairs and each sample's win rate over them (0.5 when it took part in none)."""
    from dualipo.preferences import drop_reason

    j = cfg.judging
    pairs = list(itertools.combinations(range(len(group)), 2))
    judgments = critic.judge_many([(prompt, group[a], group[b], j.dimensions[0]) for a, b in pairs])
    wins, games, won = np.zeros(len(group)), np.zeros(len(group)), []
    for (a, b), jd in zip(pairs, judgments):
        if drop_reason(jd, j.certainty_threshold) is not None:
            continue
        w, l = (a, b) if jd.verdict == "A" else (b, a)
        games[[a, b]] += 1
        wins[w] += 1
        won.append((w, l))
    return list(np.where(games > 0, wins / np.maximum(games, 1), 0.5)), won


def _select(select: str, gap: float, groups):
    """groups: [(prompt, videos, scores, confident pairs or None)] -> (prompts, a, b or None, desirable or None).
    With critic labels, `all_pairs` takes every confident judgment and `points` counts wins against losses (the
    gap is the critic's certainty filter)."""
    P, A, B, D = [], [], [], []
    for prompt, vids, s, won in groups:
        order = np.argsort(s)[::-1]
        if select == "best_vs_worst":
            if s[order[0]] - s[order[-1]] >= gap:
                P.append(prompt); A.append(vids[order[0]]); B.append(vids[order[-1]])
        elif select == "all_pairs":
            if won is None:
                won = [(i, k) if s[i] > s[k] else (k, i) for i, k in itertools.combinations(range(len(vids)), 2)
                       if abs(s[i] - s[k]) >= gap]
            for w, l in won:
                P.append(prompt); A.append(vids[w]); B.append(vids[l])
        elif select == "best":
            if s[order[0]] - s[order[-1]] >= gap:
                P.append(prompt); A.append(vids[order[0]])
        elif select == "points":
            if won is None:  # scores: above / below the prompt's mean by the gap
                mean = float(np.mean(s))
                points = [(v, x > mean) for v, x in zip(vids, s) if abs(x - mean) >= gap]
            else:  # judgments: won more of its confident comparisons than it lost (as the loop's KTO)
                tally = np.zeros(len(vids), dtype=int)
                for w, l in won:
                    tally[w] += 1
                    tally[l] -= 1
                points = [(v, t > 0) for v, t in zip(vids, tally) if t != 0]
            for v, desirable in points:
                P.append(prompt); A.append(v); D.append(desirable)
        else:
            raise ValueError(select)
    return P, A, (B if select in ("best_vs_worst", "all_pairs") else None), (D if select == "points" else None)


def run_arm(a) -> dict:
    cfg = build_config(a.preset, overrides=a.overrides)
    out = Path(a.out) / a.arm / f"seed{a.seed}"
    out.mkdir(parents=True, exist_ok=True)
    gen = build_generator(cfg)
    critic = None
    if a.labels == "critic":
        from dualipo.critics import build_critic
        critic = build_critic(cfg)
    base_path = Path(a.out) / f"_base_eval_{a.eval_prompts}.json"
    if not base_path.is_file():
        base_path.write_text(json.dumps(evaluate_generator(gen, cfg, a.eval_prompts)))
    result = {"arm": a.arm, "seed": a.seed, "labels": a.labels, "select": a.select, "gap": a.gap,
              "prompts": a.prompts, "n": a.n, "overrides": a.overrides,
              "base": json.loads(base_path.read_text()), "rounds": []}
    pool = prompt_pools(cfg.world)[0]
    done = _finished_rounds(out, result)
    for rec in done:  # an earlier run of this arm and seed finished these rounds: re-apply their adapters
        if rec["items"]:
            gen.load_lora(out / f"round{rec['round']}")
            gen.merge_lora()
        result["rounds"].append(rec)
        print(f"round {rec['round']}: reused", flush=True)
    for r in range(len(done) + 1, a.rounds + 1):
        t0 = time.time()
        start = ((r - 1) * a.prompts) % len(pool)
        prompts = [pool[(start + i) % len(pool)] for i in range(a.prompts)]
        if a.labels in ("web", "curated"):
            groups_videos = [[render_prompt(p, 10_000 * a.seed + 100 * r + k, cfg.world) for k in range(a.n)]
                             for p in prompts]
            P = [p for p in prompts for _ in range(a.n)]
            if a.labels == "web":
                P = web_captions(P, cfg.world, stream=10_000 * a.seed + 100 * r)
            A, B, D = [v for g in groups_videos for v in g], None, None
            n_items, mean_gap = len(P), 0.0
        else:
            seeds = _sample_seeds(a.seed, r, len(prompts), a.n)
            shared = Path(a.out) / "_samples" / f"seed{a.seed}_p{a.prompts}_n{a.n}.npz" if r == 1 else None
            videos = _sample(lambda: gen, cfg, [p for p in prompts for _ in range(a.n)], seeds, shared)
            t_sample = time.time() - t0
            groups = []
            for i, p in enumerate(prompts):
                vids = videos[i * a.n:(i + 1) * a.n]
                s, won = _label(a.labels, p, vids, cfg, critic)
                groups.append((p, vids, s, won))
            P, A, B, D = _select(a.select, a.gap, groups)
            n_items = len(P)
            mean_gap = float(np.mean([max(s) - min(s) for _, _, s, _ in groups])) if groups else 0.0
        t_label = time.time() - t0
        rec = {"round": r, "items": n_items, "mean_group_gap": round(mean_gap, 4)}
        if n_items:
            real = (real_videos_from_world(cfg.world, n_items, cfg.train.real_set_size)
                    if cfg.train.lambda_real > 0 else None)  # lambda2: the denoising loss on a curated set
            cache = build_cache(gen, P, A, B, desirable=D, real=real)
            rdir = out / f"round{r}"
            gen.add_lora(seed=cfg.train.seed + r)
            tr = replace(cfg.train, seed=cfg.train.seed + 100 * a.seed + r)
            train_generator(gen, cache, tr, rdir)
            gen.merge_lora()
            log = [json.loads(x) for x in (rdir / "metrics.jsonl").read_text().splitlines()]
            rec["last_metrics"] = {k: round(v, 5) for k, v in log[-1].items()}
        t_train = time.time() - t0
        rec["eval"] = evaluate_generator(gen, cfg, a.eval_prompts)
        rec["seconds"] = {"sample_label": round(t_label, 1), "train": round(t_train - t_label, 1),
                          "eval": round(time.time() - t0 - t_train, 1)}
        result["rounds"].append(rec)
        print(json.dumps(rec), flush=True)
        result["complete"] = r == a.rounds
        (out.parent / f"seed{a.seed}.json").write_text(json.dumps(result, indent=1))  # after every round
    return result


def _finished_rounds(out: Path, result: dict) -> list[dict]:
    """Rounds of OUT/ARM/seedS.json made with the same recipe whose adapters are on disk (so a run can be
    extended to more rounds without redoing them); [] when the recipe differs or nothing was saved."""
    f = out.parent / f"{out.name}.json"
    if not f.is_file():
        return []
    old = json.loads(f.read_text())
    same = ("labels", "select", "gap", "prompts", "n", "overrides")
    if any(old.get(k) != result[k] for k in same):
        raise SystemExit(f"{f} was made with another recipe; use another --arm or delete it")
    rounds = []
    for rec in old["rounds"]:
        if rec["items"] and not (out / f"round{rec['round']}" / "generator_lora.safetensors").is_file():
            break
        rounds.append(rec)
    return rounds


def _gain(table: dict, arm: str | None, rnd: int) -> dict | None:
    """Mean and spread (std over seeds) of the gain over the base after round `rnd` of `arm`."""
    if arm not in table or len(table[arm]["gain_per_round_mean"]) < rnd:
        return None
    t = table[arm]
    return {"arm": arm, "mean": t["gain_per_round_mean"][rnd - 1], "std": t["gain_per_round_std"][rnd - 1],
            "seeds": t["seeds_per_round"][rnd - 1]}


def summary(out: Path, oracle_arm: str | None, critic_arm: str | None, web_control_arm: str | None = None,
            curated_arm: str | None = None, kto_arm: str | None = None, kto_critic_arm: str | None = None) -> dict:
    """The gains over the base per arm role. `control_gain` is the fair control's (more of the web corpus);
    `curated_gain` the curated-data reference's."""
    table = arms_table(out)
    web = [_gain(table, web_control_arm, r) for r in (1, 2, 3)]
    runs = [r for t in table.values() for r in t["runs"]]
    return {"seeds": sorted({r["seed"] for r in runs}),
            "eval_videos": sorted({r["base"].get("num_videos") for r in runs} - {None}),
            "control_gain": web, "web_control_gain": web,
            "curated_gain": [_gain(table, curated_arm, r) for r in (1, 2, 3)],
            "oracle_gain_1_round": _gain(table, oracle_arm, 1), "oracle_gain_2_rounds": _gain(table, oracle_arm, 2),
            "oracle_gain_3_rounds": _gain(table, oracle_arm, 3),
            "critic_gain_1_round": _gain(table, critic_arm, 1), "critic_gain_2_rounds": _gain(table, critic_arm, 2),
            "critic_gain_3_rounds": _gain(table, critic_arm, 3), "kto_oracle_gain_1_round": _gain(table, kto_arm, 1),
            "kto_critic_gain_1_round": _gain(table, kto_critic_arm, 1), "arms": table}


def arms_table(out: Path) -> dict:
    arms: dict[str, list[dict]] = {}
    for f in sorted(out.glob("*/seed*.json")):
        r = json.loads(f.read_text())
        arms.setdefault(r["arm"], []).append(r)
    table = {}
    for arm, runs in arms.items():
        gains = [[rd["eval"]["overall"] - r["base"]["overall"] for rd in r["rounds"]] for r in runs]
        depth = max(len(g) for g in gains)  # a round's figures are over the seeds that finished it
        per_round = [[g[k] for g in gains if len(g) > k] for k in range(depth)]
        table[arm] = {"seeds": [r["seed"] for r in runs], "labels": runs[0]["labels"],
                      "select": runs[0]["select"], "overrides": runs[0]["overrides"],
                      "gain_per_round_mean": [round(float(np.mean(v)), 4) for v in per_round],
                      "gain_per_round_std": [round(float(np.std(v)), 4) for v in per_round],
                      "seeds_per_round": [[r["seed"] for r in runs if len(r["rounds"]) > k] for k in range(depth)],
                      "runs": runs}
    return table


def headroom(a) -> dict:
    """Per dimension, over the train prompts of the base's round-1 samples (OUT/_samples; sampled there when
    no arm has yet): the mean sample, the best of N on that dimension alone, and the sample best overall."""
    cfg = build_config(a.preset, overrides=a.overrides)
    pool = prompt_pools(cfg.world)[0]
    prompts = [pool[i % len(pool)] for i in range(a.prompts)]
    seeds = _sample_seeds(a.seed, 1, len(prompts), a.n)
    cache = Path(a.out) / "_samples" / f"seed{a.seed}_p{a.prompts}_n{a.n}.npz"
    videos = _sample(lambda: build_generator(cfg), cfg, [p for p in prompts for _ in range(a.n)], seeds, cache)
    groups = [[score(p, v) for v in videos[i * a.n:(i + 1) * a.n]] for i, p in enumerate(prompts)]
    best = [max(range(a.n), key=lambda k: g[k].overall) for g in groups]
    out = {}
    for dim in ("overall", *sorted({d for g in groups for s in g for d in s.dims})):
        vals = [[s.overall if dim == "overall" else s.dims.get(dim) for s in g] for g in groups]
        vals = [(v, b) for v, b in zip(vals, best) if None not in v]  # prompts where the dimension applies
        out[dim] = {"mean": round(float(np.mean([np.mean(v) for v, _ in vals])), 4),
                    "best_of_n": round(float(np.mean([max(v) for v, _ in vals])), 4),
                    "at_best_overall": round(float(np.mean([v[b] for v, b in vals])), 4), "prompts": len(vals)}
    return {"seed": a.seed, "prompts": a.prompts, "n": a.n, "dims": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=("run", "summary", "headroom"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--arm", default="dpo_oracle")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--prompts", type=int, default=256)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--labels", default="oracle", choices=("oracle", "critic", "web", "curated"))
    ap.add_argument("--select", default="all_pairs", choices=("best_vs_worst", "all_pairs", "best", "points"))
    ap.add_argument("--gap", type=float, default=0.1)
    ap.add_argument("--eval-prompts", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--oracle-arm", help="summary: the arm whose gains are oracle_gain_*")
    ap.add_argument("--critic-arm", help="summary: the arm whose gains are critic_gain_*")
    ap.add_argument("--web-control-arm", help="summary: the fair equal-compute control (--labels web)")
    ap.add_argument("--curated-arm", help="summary: the curated-data reference (--labels curated)")
    ap.add_argument("--kto-arm", help="summary: the KTO arm (oracle labels) whose gains are kto_oracle_gain_*")
    ap.add_argument("--kto-critic-arm", help="summary: the KTO arm with critic labels (kto_critic_gain_*)")
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_intermixed_args()
    torch.set_num_threads(a.threads)
    if a.command == "summary":
        print(json.dumps(summary(Path(a.out), a.oracle_arm, a.critic_arm, a.web_control_arm, a.curated_arm,
                                 a.kto_arm, a.kto_critic_arm), indent=1))
    elif a.command == "headroom":
        print(json.dumps(headroom(a), indent=1))
    else:
        run_arm(a)


if __name__ == "__main__":
    main()
