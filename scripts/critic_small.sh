#!/usr/bin/env bash
# Reproduce the shipped shapes-world critic (src/dualipo/assets/critic_small) from scratch on a CPU:
# videos -> oracle seed set -> captioning pretraining -> cold start -> held-out evaluation.
#     scripts/critic_small.sh [WORKDIR]        (default: runs/critic_small_repro; resumes where it stopped)
# Estimated 1 h 45 min on a 2-core CPU (captioning ~30 min, cold start ~35 min). Weights: WORKDIR/cold/final/
set -euo pipefail
W=${1:-runs/critic_small_repro}
D=${DUALIPO:-dualipo}
mkdir -p "$W" && cd "$W"
videos() { [ -f "$1/prompts.jsonl" ] || $D critic videos --out "$@"; }
# renders + deliberate corruptions, and the shipped base generator's own samples (the distribution it judges)
videos render_train --prompts 300 --per-prompt 4 --split train --seed 0
videos render_caption --prompts 512 --per-prompt 4 --split train --seed 2
videos render_eval --prompts 64 --per-prompt 2 --split eval --seed 3
videos gen_train --generator --prompts 300 --per-prompt 4 --split train --seed 0
videos gen_eval --generator --prompts 64 --per-prompt 4 --split eval --seed 1
# 600 seed pairs with 10 % label noise; 200 noise-free held-out pairs of base-generator videos
[ -f seed.jsonl ] || $D critic seed --videos gen_train render_train --out seed.jsonl --pairs 600 --noise 0.1 --seed 0
[ -f heldout.jsonl ] || $D critic seed --videos gen_eval --out heldout.jsonl --pairs 200 --noise 0 --seed 1
# captioning pretraining (true descriptions, no preference labels), then the cold start from it
$D critic caption --videos render_caption render_train gen_train --heldout render_eval --out caption \
    critic.path= critic_train.learning_rate=1e-3 critic_train.batch_size=32 critic_train.num_steps=2400 \
    critic_train.warmup_steps=50 critic_train.eval_every=400 critic_train.eval_pairs=128
# every batch: 35 % captioning, 55 % text-only comparisons (consistency and motion, motion weighted 2/3; half of
# their descriptions from gen_train), 10 % seed examples; the cold start's own held-out curve is one-step K=1
$D critic cold-start --seed-file seed.jsonl --heldout heldout.jsonl --caption-videos render_caption render_train \
    gen_train --out cold critic.path=caption/final critic_train.caption_mix=0.35 critic_train.reasoning_mix=0.55 \
    critic_train.reasoning_examples=120000 critic_train.batch_size=40 critic_train.learning_rate=1e-3 \
    "critic_train.reasoning_dimensions=[consistency,motion,motion]" \
    critic_train.num_steps=1500 critic_train.eval_every=250 critic_train.checkpoint_every=250
# the small preset judges in two steps (judging.describe_first=true); no-CoT answers directly
for k in 1 8; do for cot in true false; do
  $D critic eval --pairs heldout.jsonl critic.path=cold/final judging.num_votes=$k judging.chain_of_thought=$cot \
      > "eval_k${k}_cot_${cot}.json"
done; done
echo "critic: $W/cold/final (copy model.safetensors, config.json, generation_config.json, tokenizer*.json)"
