#!/usr/bin/env bash
# Runs ON the GPU machine, from the repository root, after tools/gpu_pack.sh packed .gpu/ and .gl/ here (Vulkan), or
# tools/tch_build.sh packed .gpu/ (then GPU_BACKEND=libtorch-cuda: PyTorch's kernels through burn's LibTorch backend).
# One prepared call: every step has a time cap under one overall deadline, and writes its results to $OUT as it
# goes, so a step that runs long costs only itself. Steps, most important first:
#   1. PyTorch fp32 / default-precision images/s, eval and train, b64 and b256   (tools/bench_torch_gpu.py)
#   2. tumornet train --device vulkan on a phantom set (baseline + fine-tune; compare with the same command on CPU);
#      the first GPU process, so its log shows what first-run kernel compilation costs
#   3. tumornet bench --device vulkan: eval b64, b256 (a fresh process: kernels partly from the on-disk cache)
#   4. tumornet bench --device vulkan: train b64, b256 (every layer learning: new backward kernels compile);
#      then eval in half precision (--precision f16) and, on CubeCL backends, eval and train with --gpu-conv matmul
#   5. the PyTorch protocol on the same data on CUDA (tools/torch_protocol.py --device cuda)
#   6. with any time left: the `full` stage on a larger phantom set; the model returns in parts
# Everything lands in one folder, packed into $OUT/gpu-results.tgz after every step (the device call returns at
# most 8 files).
# shellcheck source=tools/gpu_common.sh
source "$(dirname "$0")/gpu_common.sh"
BATCHES=${BATCHES:-64,256}

DATA=/tmp/phantom
$T -q synth "$DATA" --train "${TRAIN_PER_CLASS:-200}" --test "${TEST_PER_CLASS:-50}" --seed 0 > "$R/synth.log" 2>&1
log "synth rc=$?"

# Order = priority (the device call is one shot): PyTorch on the card; the accuracy check (same command as on the
# CPU, same seed and data); our eval and train images/s (kernels partly cached by then: the first process's
# compile time is in train_gpu.log); the PyTorch protocol on CUDA; then a long `full` run with what is left.
step torch_bench 70 python3 tools/bench_torch_gpu.py --batch ${BATCHES//,/ } --steps 10 --warmup 3 --json "$R/torch_bench.jsonl"
step train_gpu 200 $T --device $BACKEND train "$DATA" --out /tmp/run-gpu --seed 0 --baseline-epochs 3 --finetune-epochs 3 \
    --full-epochs 0 --validation-fraction 0.2
for f in metrics.json history.csv run.json; do cp "/tmp/run-gpu/$f" "$R/gpu_$f" 2>/dev/null; done
pack
step eval_bench 60 $T --device $BACKEND bench --mode eval --batch $BATCHES --steps 10 --warmup 3 --json "$R/bench.jsonl"
step train_bench 140 $T --device $BACKEND bench --mode train --batch $BATCHES --steps 8 --warmup 3 --json "$R/bench.jsonl"
# Half-precision inference, and (CubeCL backends) convolutions as im2col + one matrix product each.
step eval_bench_f16 60 $T --device $BACKEND --precision f16 bench --mode eval --batch $BATCHES --steps 10 --warmup 3 --json "$R/bench.jsonl"
if [ "$BACKEND" = vulkan ] || [ "$BACKEND" = cuda ]; then
    step eval_bench_matmul 60 $T --device $BACKEND --gpu-conv matmul bench --mode eval --batch $BATCHES --steps 10 --warmup 3 --json "$R/bench.jsonl"
    step train_bench_matmul 140 $T --device $BACKEND --gpu-conv matmul bench --mode train --batch $BATCHES --steps 8 --warmup 3 --json "$R/bench.jsonl"
fi
du -sh /tmp/tumornet-kernels >> "$R/steps.log" 2>&1
step torch_protocol 45 python3 tools/torch_protocol.py "$DATA" --baseline 3 --finetune 3 --val 0.2 --workers 8 \
    --device cuda --json "$R/torch_protocol.json"
# Best effort with what time is left: the `full` stage (all layers, random init) on a larger easy phantom (the
# offline demo's lesion scale 2) at the benchmark's batch size, so its kernels are cached; too slow to explore on
# 2 CPU cores. The model comes back split into parts (15 MiB per file; the call returns at most 8 files).
if [ -z "${SKIP_FULL:-}" ] && { [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" train_full_gpu "* ]]; }; then
    $T -q synth /tmp/phantom-large --train "${LARGE_TRAIN:-1000}" --test "${LARGE_TEST:-100}" --seed 1 \
        --lesion-scale 2 > "$R/synth_large.log" 2>&1
    log "synth large rc=$?"
    left=$(( DEADLINE - $(date +%s) - 10 ))
    # --time-limit lets the run stop between epochs and still finish (test evaluation, figures, model) before
    # the step's cap; if the cap hits anyway, the last checkpoint's best model comes back instead.
    limit=$(awk "BEGIN { print ($left - 50) / 60 }")
    step train_full_gpu $left $T --device $BACKEND train /tmp/phantom-large --out /tmp/run-full --seed 0 \
        --baseline-epochs 0 --finetune-epochs 0 --full-epochs "${FULL_EPOCHS:-15}" --set batch_size=64 --time-limit "$limit"
    for f in metrics.json history.csv run.json checkpoint/state.json; do
        cp "/tmp/run-full/$f" "$R/full_$(basename "$f")" 2>/dev/null
    done
    ls -laR /tmp/run-full >> "$R/steps.log" 2>&1
    model=/tmp/run-full/model.safetensors
    [ -f "$model" ] || model=$(ls -t /tmp/run-full/checkpoint/*/best.safetensors 2>/dev/null | head -1)
    if [ -n "$model" ] && [ -f "$model" ]; then
        log "returning $model"
        split -b 15M -d "$model" "$OUT/full_model.safetensors.part"
    fi
fi
log "done"
pack
