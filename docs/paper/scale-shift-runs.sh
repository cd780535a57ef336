#!/usr/bin/env bash
# The scale-shift experiments logged in docs/paper/scale-shift.md (issue #14), on DDIM 20 where a 150-step training takes
# minutes. Resumable: every step is skipped when its output exists, and trainings resume from their checkpoints, so a
# killed run continues where it stopped. Outputs go to runs/scale-shift/ (git-ignored); the log's table is read from
# each variant's summary.json (held-out MSE) and each schedule's eval/eval.json (FID/KID in two spaces, paired verdicts).
#   usage: docs/paper/scale-shift-runs.sh            (DC="dotnet path/diffcache.dll" to run a fixed build)
# On 2 cores beside other jobs, run it with OMP_NUM_THREADS=1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
DC="${DC:-./diffcache}"
out=runs/scale-shift
samples="${SAMPLES:-1000}"
mkdir -p "$out"

# The aggressive schedules, where plain caching visibly degrades:
#  t8m  transformer blocks, δ = 8 × the median change (0.72; frontier: FID 7.93 vs 5.73 uncached, PSNR 17.9 dB)
#  tr4m transformer and ResNet blocks, δ = 4 × the median change of their own profile
[ -f "$out/t8m/schedule.json" ] || { mkdir -p "$out/t8m"; $DC schedule --profile models/fashion-ldm/cache/profile-ddim-20.json --delta 8m --out "$out/t8m/schedule.json"; }
[ -f "$out/profile-tr/profile.json" ] || $DC profile --model models/fashion-ldm --steps 20 --conditions 10 --seeds 2 \
  --targets transformer2d,resnet2d --out "$out/profile-tr"
[ -f "$out/tr4m/schedule.json" ] || { mkdir -p "$out/tr4m"; $DC schedule --profile "$out/profile-tr/profile.json" --delta 4m --out "$out/tr4m/schedule.json"; }

# train SCHEDULE NAME [options]: one variant, its own checkpoints and output, held-out MSE on 16 trajectories.
train() {
  local s=$1 name=$2; shift 2
  [ -f "$out/$s/$name.safetensors" ] && return 0
  $DC train scaleshift --solver ddim --denoising-steps 20 --schedule "$out/$s/schedule.json" --out "$out/$s/$name.safetensors" \
    --checkpoints "checkpoints/scale-shift/$s-$name" --eval-mse 16 "$@" 2>&1 | tee "$out/$s/$name.log" | grep -v "^scaleshift: [0-9]"
}

# evaluate NAME CONFIGS: FID/KID in both spaces over $samples samples per configuration, the first configuration the
# reference of every paired verdict; in 12 shards kept under NAME-shards/, so a killed evaluation loses one shard at most.
evaluate() {
  local name=$1 configs=$2 shards=12
  [ -f "$name/eval.json" ] && return 0
  for i in $(seq 0 $((shards - 1))); do
    $DC eval --samples "$samples" --configs "$configs" --shard "$i/$shards" --out "$name-shards"
  done
  $DC merge "$name-shards" --out "$name"
}

for s in t8m tr4m; do
  train "$s" paper                                   # the paper's per-block loss, teacher on the student's sample (as shipped)
  train "$s" output --output-loss 0.5                # + the guided U-Net output's MSE
  train "$s" teacher --teacher-trajectory            # teacher on its own uncached trajectory, matched step by step
  train "$s" unroll4 --unroll 4                      # gradient through 4 consecutive steps
  # Quality: plain caching first, so every verdict is against it; uncached beside for scale.
  configs="ddim:20:$out/$s/schedule.json,ddim:20:none"
  for v in paper output teacher unroll4; do configs="$configs,ddim:20:$out/$s/schedule.json:ss=$out/$s/$v.safetensors"; done
  evaluate "$out/$s/eval" "$configs"
done
# 10x the budget last (10 hours of one core per schedule here), paired against plain caching on the same seeds.
for s in t8m tr4m; do
  train "$s" paper10x --steps 1500
  evaluate "$out/$s/eval-10x" "ddim:20:$out/$s/schedule.json,ddim:20:$out/$s/schedule.json:ss=$out/$s/paper10x.safetensors"
done
echo "scale-shift runs done: $out"
