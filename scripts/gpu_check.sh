#!/usr/bin/env bash
# The GPU check in one command, on a machine with CUDA (issue 26 item 6):
#   1. the CUDA tests (tests/test_gpu.py, marker gpu);
#   2. `dualipo run` of the tiny and the small preset on CUDA, one short round each;
#   3. benchmarks/full_arch.py: one DPO step and one sampling pass of CogVideoX-2B, CogVideoX-5B and
#      Wan2.1-T2V-1.3B (random weights from the published configs, bf16, LoRA, gradient checkpointing) at the
#      paper's resolutions: time, peak memory and MFU per stage, beside the planner's prediction;
#   4. `dualipo plan` of the same architectures on one GPU of this kind, for the comparison.
#     scripts/gpu_check.sh [WORKDIR]      (default: runs/gpu_check; everything lands there, JSON + logs)
# PEAK_TFLOPS (default 989, H100 / H200 bf16 dense) sets the MFU's denominator; PY the python (default python).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
W=${1:-runs/gpu_check}
PY=${PY:-python}
PEAK=${PEAK_TFLOPS:-989}
mkdir -p "$W"
cd "$ROOT"
$PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: this check needs a GPU')"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$W/gpu.txt"

echo "== 1. pytest -m gpu"
$PY -m pytest -q -m gpu tests/test_gpu.py 2>&1 | tee "$W/pytest_gpu.log"

echo "== 2. dualipo run on CUDA: tiny, then small (one short round)"
rm -rf "$W/run_tiny" "$W/run_small"
$PY -m dualipo.cli run --preset tiny --out "$W/run_tiny" critic.device=cuda 2>&1 | tee "$W/run_tiny.log"
$PY -m dualipo.cli run --preset small --out "$W/run_small" critic.device=cuda rounds.num_rounds=1 \
    sampling.prompts_per_round=4 sampling.videos_per_prompt=2 train.num_steps=5 critic_refine.steps=2 \
    eval.num_prompts=4 2>&1 | tee "$W/run_small.log"

echo "== 3. full architectures: one DPO step and one sampling pass each"
$PY benchmarks/full_arch.py --device cuda --gradient-checkpointing --peak-tflops "$PEAK" \
    --out "$W/full_arch.json" 2>&1 | tee "$W/full_arch.log"

echo "== 4. the planner's view of the same architectures on one such GPU"
MEM=$($PY -c "import torch; print(round(torch.cuda.get_device_properties(0).total_memory / 2**30))")
for spec in "full-cogvideox-2b cogvideox-2b" "full-cogvideox-5b cogvideox-5b" "full-wan-1.3b wan2.1-t2v-1.3b"; do
  set -- $spec  # the presets of issue 26 item 1 (paper resolutions); published configs where no checkpoint is here
  $PY -m dualipo.cli plan --preset $1 --gpus 1 --gpu-mem "$MEM" --peak-tflops "$PEAK" \
      --published-generator $2 --published-critic qwen2.5-vl-7b-instruct --json > "$W/plan_$2.json"
done
echo "done: $W/full_arch.json (measured) and $W/plan_*.json (planned)"
