#!/usr/bin/env bash
# Re-make the shipped small critic (src/dualipo/assets/critic_small) in one command on a CPU: the base generator's
# own samples -> a pointwise seed set (every video on every dimension, Good / Normal / Bad, oracle labels with 10 %
# label noise: the shapes world's stand-in for what a small team would label) -> the previous shipped critic grown
# twice as deep without changing what it computes (scripts/critic_grow.py: 8 text layers, 4 vision blocks,
# 2.33 M parameters) -> a cold start (captions of renders and samples in every batch) -> held-out evaluation,
# judging pairs from pointwise scores (the small preset's judging.pairs_from=scores).
#     scripts/critic_small.sh [WORKDIR]     (default: runs/critic_small; resumes where it stopped)
# FROM=DIR starts from another critic (default: the previous shipped critic, kept as the test fixture
# tests/assets/critic_pairwise; scripts/critic_reseed.sh made it); GROW=0 keeps its size (the 1.32 M critic shipped
# before). About 50 min on a 2-core CPU (not timed end to end). Weights: WORKDIR/cold/final/ (copy model.safetensors, config.json,
# generation_config.json, tokenizer*.json into src/dualipo/assets/critic_small/). Measurements: docs/critic.md.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
W=${1:-runs/critic_small}
FROM=${FROM:-$ROOT/tests/assets/critic_pairwise}
D=${DUALIPO:-dualipo}
mkdir -p "$W" && cd "$W"
videos() { [ -f "$1/prompts.jsonl" ] || $D critic videos --out "$@"; }
videos render_train --prompts 146 --per-prompt 4 --split train --seed 0
videos gen_train --generator --prompts 146 --per-prompt 4 --split train --seed 0
videos gen_train2 --generator --prompts 146 --per-prompt 4 --split train --seed 2
videos gen_eval --generator --prompts 64 --per-prompt 4 --split eval --seed 1
# 1168 sampled videos x 4 dimensions = 4672 pointwise labels; 600 noise-free held-out pairs of held-out prompts
[ -f seed_point.jsonl ] || $D critic seed --videos gen_train gen_train2 --out seed_point.jsonl \
    critic_cold.seed_pairs=0 --pointwise 4672 critic_cold.seed_noise=0.1 critic_cold.seed=0
[ -f heldout.jsonl ] || $D critic seed --videos gen_eval --out heldout.jsonl critic_cold.seed_pairs=600 \
    critic_cold.seed_noise=0 critic_cold.seed=7
START=$FROM
if [ "${GROW:-1}" = 1 ]; then
    [ -f grown/model.safetensors ] || ${PYTHON:-python} "$ROOT/scripts/critic_grow.py" "$FROM" grown
    START=$PWD/grown
fi
$D critic cold-start critic_cold.seed_file=seed_point.jsonl --heldout heldout.jsonl \
    "critic_cold.caption_videos=[render_train,gen_train,gen_train2]" --out cold critic.path="$START" \
    critic_cold.caption_mix=0.3 \
    critic_cold.batch_size=40 critic_cold.learning_rate=5e-4 critic_cold.warmup_steps=20 \
    critic_cold.num_steps=${STEPS:-1000} critic_cold.eval_every=500 critic_cold.checkpoint_every=250 \
    critic_cold.eval_pairs=100
[ -f eval_k8.json ] || $D critic eval --pairs heldout.jsonl --judgments judgments_k8.jsonl \
    critic.path=cold/final > eval_k8.json
echo "critic: $W/cold/final"
