#!/usr/bin/env bash
# Sourced (from the repository root) by the tools/gpu_*.sh scripts that run ON the GPU machine: the results
# folder $R packed into $OUT/gpu-results.tgz, one overall deadline (GPU_BUDGET_S), `log`, `pack`, the capped
# `step` runner, the Vulkan libraries (.gl/*.deb) and environment (or, for GPU_BACKEND=libtorch-cuda, the
# machine's own libtorch on the loader's path), and the tumornet binary as $T (.gpu/tumornet.xz unless
# TUMORNET_BIN names one; .gpu/tumornet-tch.xz for libtorch-cuda); machine facts go to $R/machine.txt.
set -u
OUT=${OUT:-/tmp/gpu-out}
R=/tmp/gpu-results
mkdir -p "$OUT" "$R"
DEADLINE=$(( $(date +%s) + ${GPU_BUDGET_S:-560} ))
log() { echo "[$(date +%T)] $*" | tee -a "$R/steps.log"; }
pack() { tar -czf /tmp/gpu-results.tgz -C "$R" . && mv -f /tmp/gpu-results.tgz "$OUT/gpu-results.tgz"; }
step() { # step NAME CAP_S command...   (ONLY="a b" runs just the named steps)
    local name=$1 cap=$2; shift 2
    if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then return; fi
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
case $BACKEND in
    libtorch*)
        # The `tch` build (tools/tch_build.sh) links libtorch at run time from this machine's own PyTorch.
        LD_LIBRARY_PATH="$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__))')/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        export LD_LIBRARY_PATH
        SKIP_GL=1
        ;;
esac
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
    # tools/tch_build.sh packs the LibTorch build as .gpu/tumornet-tch.xz (34 MB), tools/gpu_pack.sh the Vulkan
    # one as .gpu/tumornet.xz (50 MB); a device call carries at most 64 MiB, so one of them per call.
    packed=.gpu/tumornet.xz
    case $BACKEND in libtorch*) packed=.gpu/tumornet-tch.xz ;; esac
    python3 -c "import lzma, shutil; shutil.copyfileobj(lzma.open('$packed'), open('/tmp/tumornet', 'wb'))"
    chmod +x /tmp/tumornet
    T=/tmp/tumornet
fi
{ nvidia-smi -L; nproc; $T --version; python3 -c "import torch, torchvision; print(torch.__version__, torchvision.__version__, torch.version.cuda)"; } > "$R/machine.txt" 2>&1
log "machine: $(head -1 "$R/machine.txt")"
