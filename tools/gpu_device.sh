#!/usr/bin/env bash
# Runs ON the GPU machine, from the repository root, after tools/gpu_pack.sh packed .gpu/ and .gl/ here.
# One prepared call: every step has a time cap under one overall deadline, and writes its results to $OUT as it
# goes, so a step that runs long costs only itself. Steps, most important first:
#   1. PyTorch fp32 / default-precision images/s, eval and train, b64 and b256   (tools/bench_torch_gpu.py)
#   2. tumornet bench --device vulkan: eval b64, b256 (first run: kernel compilation, timed as warm-up)
#   3. tumornet bench --device vulkan: train b64, b256
#   4. tumornet train --device vulkan on a phantom set (baseline + fine-tune; compare with the same command on CPU)
#   5. eval bench again in a fresh process: what the on-disk kernel cache saves
#   6. the PyTorch protocol on the same data on CUDA (tools/torch_protocol.py --device cuda)
#   7. with any time left: the `full` stage on a larger phantom set; the model returns in parts
# Everything lands in one folder, packed into $OUT/gpu-results.tgz after every step (the device call returns at
# most 8 files).
set -u
OUT=${OUT:-/tmp/gpu-out}
R=/tmp/gpu-results
mkdir -p "$OUT" "$R"
DEADLINE=$(( $(date +%s) + ${GPU_BUDGET_S:-560} ))
log() { echo "[$(date +%T)] $*" | tee -a "$R/steps.log"; }
pack() { tar -czf /tmp/gpu-results.tgz -C "$R" . && mv -f /tmp/gpu-results.tgz "$OUT/gpu-results.tgz"; }
step() { # step NAME CAP_S command...
    local name=$1 cap=$2; shift 2
    local left=$(( DEADLINE - $(date +%s) ))
    (( left < cap )) && cap=$left
    if (( cap < 10 )); then log "skip $name (no time left)"; return; fi
    log "start $name (cap ${cap}s)"
    local t0; t0=$(date +%s)
    timeout -k 5 "$cap" "$@" > "$R/$name.log" 2>&1
    local rc=$?
    log "end $name rc=$rc after $(( $(date +%s) - t0 )) s"
    pack
}

# A dry run elsewhere: GPU_BACKEND=cpu TUMORNET_BIN=target/debug/tumornet SKIP_GL=1 BATCHES=2,4 ...
BACKEND=${GPU_BACKEND:-vulkan}
BATCHES=${BATCHES:-64,256}
if [ -z "${SKIP_GL:-}" ]; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
fi
export XDG_RUNTIME_DIR=/tmp
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
export CUBECL_AUTOTUNE_LEVEL=${CUBECL_AUTOTUNE_LEVEL:-minimal}
export TUMORNET_KERNEL_CACHE=/tmp/tumornet-kernels
if [ -n "${TUMORNET_BIN:-}" ]; then
    T=$TUMORNET_BIN
else
    python3 -c "import lzma, shutil; shutil.copyfileobj(lzma.open('.gpu/tumornet.xz'), open('/tmp/tumornet', 'wb'))"
    chmod +x /tmp/tumornet
    T=/tmp/tumornet
fi
{ nvidia-smi -L; nproc; $T --version; } > "$R/machine.txt" 2>&1
log "machine: $(head -1 "$R/machine.txt")"

DATA=/tmp/phantom
$T -q synth "$DATA" --train "${TRAIN_PER_CLASS:-200}" --test "${TEST_PER_CLASS:-50}" --seed 0 > "$R/synth.log" 2>&1
log "synth rc=$?"

step torch_bench 100 python3 tools/bench_torch_gpu.py --batch ${BATCHES//,/ } --steps 15 --warmup 5 --json "$R/torch_bench.jsonl"
step eval_bench 120 $T --device $BACKEND bench --mode eval --batch $BATCHES --steps 10 --warmup 3 --json "$R/bench.jsonl"
step train_bench 170 $T --device $BACKEND bench --mode train --batch $BATCHES --steps 8 --warmup 3 --json "$R/bench.jsonl"
step train_gpu 200 $T --device $BACKEND train "$DATA" --out /tmp/run-gpu --seed 0 --baseline-epochs 3 --finetune-epochs 3 \
    --full-epochs 0 --validation-fraction 0.2
cp /tmp/run-gpu/metrics.json "$R/gpu_metrics.json" 2>/dev/null
cp /tmp/run-gpu/history.csv "$R/gpu_history.csv" 2>/dev/null
step eval_bench_cached 40 $T --device $BACKEND bench --mode eval --batch ${BATCHES%%,*} --steps 5 --warmup 3 --json "$R/bench_cached.jsonl"
du -sh /tmp/tumornet-kernels >> "$R/steps.log" 2>&1
step torch_protocol 60 python3 tools/torch_protocol.py "$DATA" --baseline 3 --finetune 3 --val 0.2 --workers 8 \
    --device cuda --json "$R/torch_protocol.json"
# Best effort with what time is left: the `full` stage (all layers, random init) on a larger phantom set — the
# offline recipe is too slow to explore on 2 CPU cores. The model comes back split into parts (16 MiB per file).
if [ -z "${SKIP_FULL:-}" ]; then
    $T -q synth /tmp/phantom-large --train "${LARGE_TRAIN:-500}" --test "${LARGE_TEST:-100}" --seed 1 > "$R/synth_large.log" 2>&1
    step train_full_gpu 300 $T --device $BACKEND train /tmp/phantom-large --out /tmp/run-full --seed 0 --baseline-epochs 0 \
        --finetune-epochs 0 --full-epochs "${FULL_EPOCHS:-12}" --batch-size 64
    for f in metrics.json history.csv run.json; do cp "/tmp/run-full/$f" "$R/full_$f" 2>/dev/null; done
    if [ -f /tmp/run-full/model.safetensors ]; then
        split -b 15M -d /tmp/run-full/model.safetensors "$OUT/full_model.safetensors.part"
    fi
fi
log "done"
pack
