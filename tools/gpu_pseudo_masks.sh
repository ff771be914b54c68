#!/usr/bin/env bash
# Runs ON the GPU machine, from the repository root: `pseudo-masks` with occlusion maps through the vulkan backend
# (the CAM's backward pass and the occlusion's forward passes on the GPU), for its time, its masks (to train a
# U-Net on here) and a comparison with the same command's masks on the CPU. Packed here beforehand:
# .gpu/tumornet.xz and .gl/ (tools/gpu_pack.sh) and a run folder at .gpu/run (run.json + model.safetensors; an f16
# copy fits the 64 MiB the call carries). The data are not carried: `synth` makes them again there (SYNTH, the
# same seed gives the same images: .gpu/expected.md5, if present, checks some), and the first TRAIN_N / TEST_N
# images per class are used. E.g. with the session's device tool:
#   run(command="bash tools/gpu_pseudo_masks.sh", carry=[".gpu", ".gl"], timeout_s=600)
# Steps: a warm-up on 2 images per class (first-run kernel compilation: CAM backward, batched forward), then the
# Testing split, then the Training split (kernels from the on-disk cache). Results: $OUT/gpu-results.tgz (logs
# with /usr/bin/time, each split's pseudo_masks.json and quality.md) and $OUT/masks-<split>.tgz.
# shellcheck source=tools/gpu_common.sh
source "$(dirname "$0")/gpu_common.sh"
RUN=${RUN:-.gpu/run}
read -r -a SYNTH <<< "${SYNTH:---train 1000 --test 100 --seed 1 --lesion-scale 2}"
TRAIN_N=${TRAIN_N:-600}
TEST_N=${TEST_N:-100}
read -r -a FLAGS <<< "${PSEUDO_FLAGS:---recipe best}"
TIME=(/usr/bin/time -v)
[ -x /usr/bin/time ] || TIME=()

FULL=/tmp/phantom-seg
step synth 60 "$T" -q synth "$FULL" "${SYNTH[@]}"
if [ -f .gpu/expected.md5 ]; then
    (cd "$FULL" && md5sum -c "$OLDPWD/.gpu/expected.md5") > "$R/md5.log" 2>&1
    log "md5 check rc=$? ($(grep -c ': OK$' "$R/md5.log") files equal)"
fi

# shellcheck source=tools/phantom_subset.sh
source "$(dirname "$0")/phantom_subset.sh"
subset "$FULL" Testing 2 /tmp/pseudo-small
subset "$FULL" Testing "$TEST_N" /tmp/pseudo-Testing
subset "$FULL" Training "$TRAIN_N" /tmp/pseudo-Training

step warmup 200 "${TIME[@]}" "$T" --device "$BACKEND" pseudo-masks "$RUN" /tmp/pseudo-small --out /tmp/out-small "${FLAGS[@]}"
for split in Testing Training; do
    step "pseudo_$split" 600 "${TIME[@]}" "$T" --device "$BACKEND" pseudo-masks "$RUN" "/tmp/pseudo-$split" \
        --out "/tmp/out-$split" "${FLAGS[@]}"
    cp "/tmp/out-$split/pseudo_masks.json" "$R/pseudo_masks_$split.json" 2>/dev/null
    cp "/tmp/out-$split/quality.md" "$R/quality_$split.md" 2>/dev/null
    [ -d "/tmp/out-$split/masks" ] && tar -czf "$OUT/masks-$split.tgz" -C "/tmp/out-$split" masks
    pack
done
log "done"
pack
