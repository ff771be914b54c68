#!/usr/bin/env bash
# The best measured pseudo-segmentation chain on a phantom, for the record in BENCHMARKS.md: synth → train a classifier (the `full` stage:
# there are no ImageNet weights offline) → two more epochs of it with random black rectangles (`--set random_erasing=0.5`,
# so that black stops meaning "no tumour" to the deletion check) → pseudo-masks of a per-class subset → U-Net →
# its Testing scores.
# Every step is skipped when its last output is already there, so the script continues an interrupted chain (the
# classifier's own `--resume` included). All outputs under WORK (default /tmp/seg-pipeline); logs beside them.
#
#   tools/seg_pipeline.sh                       # the `best` recipe and the U-Net defaults (BENCHMARKS.md:
#                                               # Testing 0.710, held out 0.699)
#   STOP_AFTER=pseudo tools/seg_pipeline.sh     # stop after a step: synth, classifier, erasing, pseudo, unet
#
# Settings (environment): TUMORNET (binary; default target/release/tumornet), WORK, SYNTH (synth flags),
# TRAIN_FLAGS (classifier), ERASE_FLAGS (the erasing epochs, from the classifier's weights; set empty for none),
# TRAIN_N / TEST_N (images per class of each split given to pseudo-masks and the U-Net), PSEUDO_FLAGS (default:
# the `best` recipe), SEG_FLAGS (default: the U-Net's defaults).
# Cost on the 2-core dev VM (BENCHMARKS.md): classifier ≈ 9–17 min per epoch of 3,600 images (the erasing epochs
# too); pseudo-masks with occlusion ≈ 3.3–6.5 s per occluded image; U-Net ≈ 0.6–1 min per epoch per 100
# images/class. With the defaults: 40–65 min of pseudo-masks (700 occluded pituitary images) and 40–70 min of
# U-Net (the lower figures: each step alone on the VM).
set -euo pipefail
T=${TUMORNET:-target/release/tumornet}
WORK=${WORK:-/tmp/seg-pipeline}
read -r -a SYNTH <<< "${SYNTH:---train 1000 --test 100 --seed 1 --lesion-scale 2}"
read -r -a TRAIN_FLAGS <<< "${TRAIN_FLAGS:---baseline-epochs 0 --finetune-epochs 0 --full-epochs 7 --set batch_size=32}"
read -r -a ERASE_FLAGS <<< "${ERASE_FLAGS---baseline-epochs 0 --finetune-epochs 0 --full-epochs 2 --set full_lr=1e-4 --set random_erasing=0.5}"
TRAIN_N=${TRAIN_N:-600}
TEST_N=${TEST_N:-100}
read -r -a PSEUDO_FLAGS <<< "${PSEUDO_FLAGS:---recipe best}"
read -r -a SEG_FLAGS <<< "${SEG_FLAGS:-}"
STOP_AFTER=${STOP_AFTER:-}
[ -x "$T" ] || { echo "no binary at $T (cargo build --release)" >&2; exit 1; }
mkdir -p "$WORK"
log() { echo "$(date -u +%FT%TZ) $*" | tee -a "$WORK/pipeline.log"; }
# step NAME DONE_FILE COMMAND…: run COMMAND (output in WORK/NAME.log) unless DONE_FILE exists.
step() {
    local name=$1 done=$2
    shift 2
    if [ -e "$done" ]; then
        log "$name: already done ($done)"
    else
        log "$name: $*"
        local start=$SECONDS
        "$@" > "$WORK/$name.log" 2>&1 || { log "$name: failed, see $WORK/$name.log"; exit 1; }
        log "$name: done in $((SECONDS - start)) s"
    fi
    [ "$STOP_AFTER" != "$name" ] || { log "stopping after $name"; exit 0; }
}

step synth "$WORK/phantom/phantom.json" "$T" -q synth "$WORK/phantom" "${SYNTH[@]}"
# resume_if_started DIR: `resume` is (--resume) when DIR holds an interrupted run's checkpoint, else empty.
resume_if_started() {
    resume=()
    if [ -f "$1/checkpoint/state.json" ]; then resume=(--resume); fi
}
resume_if_started "$WORK/classifier"
step classifier "$WORK/classifier/metrics.json" \
    "$T" -q train "$WORK/phantom" --out "$WORK/classifier" "${TRAIN_FLAGS[@]}" "${resume[@]}"
CLASSIFIER="$WORK/classifier"
if [ ${#ERASE_FLAGS[@]} -gt 0 ]; then
    CLASSIFIER="$WORK/classifier-erased"
    resume_if_started "$CLASSIFIER"
    step erasing "$CLASSIFIER/metrics.json" "$T" -q train "$WORK/phantom" --out "$CLASSIFIER" \
        --weights "$WORK/classifier/model.safetensors" "${ERASE_FLAGS[@]}" "${resume[@]}"
fi

# The first TRAIN_N / TEST_N images of each class folder, with their true masks, as links.
# shellcheck source=tools/phantom_subset.sh
source "$(dirname "$0")/phantom_subset.sh"
DATA="$WORK/subset-$TRAIN_N-$TEST_N"
if [ ! -d "$DATA" ]; then
    subset "$WORK/phantom" Training "$TRAIN_N" "$DATA"
    subset "$WORK/phantom" Testing "$TEST_N" "$DATA"
fi
step pseudo "$WORK/pseudo/pseudo_masks.json" \
    "$T" -q pseudo-masks "$CLASSIFIER" "$DATA" --out "$WORK/pseudo" "${PSEUDO_FLAGS[@]}"
step unet "$WORK/unet/metrics.md" \
    "$T" -q train-seg "$CLASSIFIER" "$DATA" --out "$WORK/unet" --pseudo "$WORK/pseudo" "${SEG_FLAGS[@]}"
log "done: classifier $CLASSIFIER/comparison.md, pseudo-masks $WORK/pseudo/quality.md, U-Net $WORK/unet/metrics.md"
