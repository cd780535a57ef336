#!/usr/bin/env bash
# The scale-shift experiments logged in docs/paper/scale-shift.md (issue #14), on DDIM 20 where a 150-step training takes
# about 15 minutes on an idle 2-core machine.
#   usage: docs/paper/scale-shift-runs.sh [t8m|tr4m|10x|ship20|ship50 ...]      (default: t8m tr4m; DC="dotnet path/diffcache.dll";
#          VARIANTS="paper output" trains and evaluates only those; VARIANT_10X=output picks the 10x recipe,
#          SHIP_VARIANT=output the recipe ship20/ship50 train on the model's own schedules)
# One schedule's five variants and its evaluation take about 1.5 to 2 hours idle (twice that beside another job with
# OMP_NUM_THREADS=1); the 10x budget about 70 minutes of training and 10 of evaluation.
# Results are small and kept in git, under docs/paper/scale-shift/<schedule>/: the schedule, each trained adjustment
# (settings, training time and held-out MSE in its metadata) with its log, and the merged eval.json. Work in flight
# is git-ignored: training checkpoints in checkpoints/scale-shift/, evaluation shards in runs/scale-shift/. Every
# step is skipped when its result exists and trainings resume from their checkpoints, so a killed run continues.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
DC="${DC:-./diffcache}"
keep=docs/paper/scale-shift
work=runs/scale-shift
samples="${SAMPLES:-1000}"
mkdir -p "$keep" "$work"

# The aggressive schedules, where plain caching visibly degrades:
#  t8m  transformer blocks, δ = 8 × the median change (0.72; frontier: FID 7.93 vs 5.73 uncached, PSNR 17.9 dB)
#  tr4m transformer and ResNet blocks, δ = 4 × the median change of their own profile
schedule() {
  local s=$1
  [ -f "$keep/$s/schedule.json" ] && return 0
  mkdir -p "$keep/$s"
  case $s in
    t8m) $DC schedule --profile models/fashion-ldm/cache/profile-ddim-20.json --delta 8m --out "$keep/$s/schedule.json" ;;
    tr4m)
      [ -f "$keep/profile-tr/profile.json" ] || $DC profile --model models/fashion-ldm --steps 20 --conditions 10 --seeds 2 \
        --targets transformer2d,resnet2d --out "$keep/profile-tr"
      $DC schedule --profile "$keep/profile-tr/profile.json" --delta 4m --out "$keep/$s/schedule.json" ;;
  esac
}

# train SCHEDULE NAME [options]: one variant on DDIM 20, its own checkpoints and output, held-out MSE on 16 trajectories.
train() {
  local s=$1 name=$2; shift 2
  train_on ddim 20 "$keep/$s/schedule.json" "$keep/$s" "$name" "$@"
}

# train_on SOLVER STEPS SCHEDULE FOLDER NAME [options]: FOLDER/NAME.safetensors and its log.
train_on() {
  local solver=$1 steps=$2 sched=$3 folder=$4 name=$5; shift 5
  [ -f "$folder/$name.safetensors" ] && return 0
  mkdir -p "$folder"
  $DC train scaleshift --solver "$solver" --denoising-steps "$steps" --schedule "$sched" --out "$folder/$name.safetensors" \
    --checkpoints "checkpoints/scale-shift/$(basename "$folder")-$name" --eval-mse 16 "$@" 2>&1 | grep -v "^scaleshift: [0-9]" | tee "$folder/$name.log"
}

# evaluate SCHEDULE NAME CONFIGS: FID/KID in both spaces over $samples samples per configuration, the first
# configuration the reference of every paired verdict; in 12 shards, so a killed evaluation loses one shard at most.
evaluate() {
  local s=$1 name=$2 configs=$3 shards=12
  [ -f "$keep/$s/$name.json" ] && return 0
  for i in $(seq 0 $((shards - 1))); do
    $DC eval --samples "$samples" --configs "$configs" --shard "$i/$shards" --out "$work/$s/$name-shards"
  done
  $DC merge "$work/$s/$name-shards" --out "$work/$s/$name"
  cp "$work/$s/$name/eval.json" "$keep/$s/$name.json"
}

# options VARIANT: the training options of each variant.
options() {
  case $1 in
    paper) echo "--output-loss 0" ;;                   # the paper's per-block loss, teacher on the student's sample
    output) echo "--output-loss 0.5" ;;                # + the guided U-Net output's MSE (train scaleshift's default since it won)
    teacher) echo "--output-loss 0 --teacher-trajectory" ;;  # teacher on its own uncached trajectory, matched step by step
    unroll4) echo "--output-loss 0 --unroll 4" ;;     # gradient through 4 consecutive steps
    # The sample itself: the guided output matched along the teacher's own uncached trajectory with the gradient through
    # all 20 steps, so the adjustment may learn to undo the drift the cache accumulates (which per-step matching cannot).
    trajectory) echo "--teacher-trajectory --unroll 20 --block-loss 0 --output-loss 1" ;;
    *) echo "unknown variant $1 (paper, output, teacher, unroll4, trajectory)" >&2; return 2 ;;
  esac
}

# variants SCHEDULE: train each of $VARIANTS (default all five), then evaluate them side by side.
variants() {
  local s=$1 v opts
  schedule "$s"
  for v in ${VARIANTS:-paper output teacher unroll4 trajectory}; do
    opts=$(options "$v")
    # shellcheck disable=SC2086
    train "$s" "$v" $opts
  done
  # Quality: plain caching first, so every verdict is against it; uncached beside for scale.
  local configs="ddim:20:$keep/$s/schedule.json,ddim:20:none"
  for v in ${VARIANTS:-paper output teacher unroll4 trajectory}; do configs="$configs,ddim:20:$keep/$s/schedule.json:ss=$keep/$s/$v.safetensors"; done
  evaluate "$s" eval "$configs"
}

# 10x the budget (1500 steps), paired against plain caching on the same seeds; the recipe is the best of the 150-step ones.
tenfold() {
  local s variant="${VARIANT_10X:-output}" opts
  opts=$(options "$variant")
  for s in t8m; do
    schedule "$s"
    # shellcheck disable=SC2086
    train "$s" "${variant}10x" --steps 1500 $opts
    evaluate "$s" eval-10x "ddim:20:$keep/$s/schedule.json,ddim:20:$keep/$s/schedule.json:ss=$keep/$s/${variant}10x.safetensors"
    # and paired against the same recipe at 150 steps, on the same seeds
    evaluate "$s" eval-10x-vs-1x "ddim:20:$keep/$s/schedule.json:ss=$keep/$s/$variant.safetensors,ddim:20:$keep/$s/schedule.json:ss=$keep/$s/${variant}10x.safetensors"
  done
}

# The winning recipe ($SHIP_VARIANT, default output) on the shipped schedules of SETTINGS (solver:steps ...), each
# evaluated beside plain caching (first, the reference of every paired verdict) and the adjustment shipped before it.
ship() {
  local variant="${SHIP_VARIANT:-output}" opts setting solver steps folder
  opts=$(options "$variant")
  for setting in "$@"; do
    solver=${setting%%:*} steps=${setting##*:}
    folder="$keep/shipped-${solver/++/pp}-$steps"
    # shellcheck disable=SC2086
    train_on "$solver" "$steps" "models/fashion-ldm/cache/schedule-$solver-$steps.json" "$folder" "$variant" $opts
    evaluate "$(basename "$folder")" eval "$solver:$steps:blockcache,$solver:$steps:blockcache:ss,$solver:$steps:models/fashion-ldm/cache/schedule-$solver-$steps.json:ss=$folder/$variant.safetensors"
  done
}

for job in "${@:-t8m tr4m}"; do
  for j in $job; do
    case $j in
      t8m|tr4m) variants "$j" ;;
      10x) tenfold ;;
      ship20) ship ddim:20 dpm++:20 ;;
      ship50) ship ddim:50 dpm++:50 ;;
      *) echo "usage: $0 [t8m|tr4m|10x|ship20|ship50 ...]" >&2; exit 2 ;;
    esac
  done
done
echo "scale-shift runs done: $keep"
