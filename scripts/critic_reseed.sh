#!/usr/bin/env bash
# Re-seed the small pairwise critic for the shipped base generator's videos (it was the shipped critic until
# scripts/critic_small.sh made the pointwise one from it; it is now the test fixture tests/assets/critic_pairwise):
# the base's own samples -> a 600-pair seed set labelled by the oracle with 10 % label noise (the shapes world's
# stand-in for what a small team would label) -> a short cold start from the current critic (captions of renders
# and samples, text-only comparisons, seed examples) -> K = 8 accuracy on 600 noise-free held-out pairs of the
# base's samples of held-out prompts.
#     scripts/critic_reseed.sh [WORKDIR]     (default: runs/critic_reseed; resumes where it stopped)
# FROM=DIR starts from another critic (default: the pairwise critic itself). About 30 min on a 2-core CPU. Weights:
# WORKDIR/cold/final/ (copy model.safetensors, config.json, generation_config.json, tokenizer*.json into
# tests/assets/critic_pairwise/). Its predecessor was made from nothing by the scripts/critic_small.sh of commit
# 14df281 (the previous world).
set -euo pipefail
W=${1:-runs/critic_reseed}
FROM=${FROM:-$(cd "$(dirname "$0")/.." && pwd)/tests/assets/critic_pairwise}
D=${DUALIPO:-dualipo}
mkdir -p "$W" && cd "$W"
videos() { [ -f "$1/prompts.jsonl" ] || $D critic videos --out "$@"; }
videos render_train --prompts 146 --per-prompt 4 --split train --seed 0
videos gen_train --generator --prompts 146 --per-prompt 4 --split train --seed 0
videos gen_eval --generator --prompts 64 --per-prompt 4 --split eval --seed 1
[ -f seed.jsonl ] || $D critic seed --videos gen_train --out seed.jsonl critic_cold.seed_pairs=600 \
    critic_cold.seed_noise=0.1 critic_cold.seed=0
[ -f heldout.jsonl ] || $D critic seed --videos gen_eval --out heldout.jsonl critic_cold.seed_pairs=600 \
    critic_cold.seed_noise=0 critic_cold.seed=7
$D critic cold-start critic_cold.seed_file=seed.jsonl --heldout heldout.jsonl \
    "critic_cold.caption_videos=[render_train,gen_train]" --out cold critic.path="$FROM" \
    critic_cold.caption_mix=0.35 critic_cold.reasoning_mix=0.55 \
    critic_cold.reasoning_examples=40000 critic_cold.batch_size=40 critic_cold.learning_rate=5e-4 \
    "critic_cold.reasoning_dimensions=[consistency,motion,motion]" critic_cold.warmup_steps=20 \
    critic_cold.num_steps=${STEPS:-600} critic_cold.eval_every=200 critic_cold.checkpoint_every=100 \
    critic_cold.eval_pairs=100 judging.pairs_from=comparison
[ -f eval_k8.json ] || $D critic eval --pairs heldout.jsonl critic.path=cold/final judging.pairs_from=comparison \
    > eval_k8.json
echo "critic: $W/cold/final"
