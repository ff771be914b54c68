#!/usr/bin/env bash
# Build the `vulkan` binary here and pack what the GPU machine needs into .gpu/ (git-ignored):
#   .gpu/tumornet.xz   the stripped release binary, xz-compressed (the device call carries at most 64 MiB)
#   .gl/*.deb          the Vulkan loader and glvnd libraries (the device image has the NVIDIA driver only)
# Then run tools/gpu_device.sh there, e.g. with the session's device tool:
#   run(command="bash tools/gpu_device.sh", carry=[".gpu/tumornet.xz", ".gl"], timeout_s=600)
# or tools/gpu_pseudo_masks.sh (occlusion pseudo-masks on the GPU; it also needs a run folder copied to .gpu/run).
# A clean build of the vulkan feature takes 26–39 min on 2 cores (its binary 50 MB packed); it uses its own
# target folder so the CPU build stays cached.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-$PWD/../target-vulkan}
CARGO_TARGET_DIR="$target" cargo build --release --locked --features vulkan
mkdir -p .gpu
strip -o .gpu/tumornet "$target/release/tumornet"
xz -T2 -6 -f .gpu/tumornet
ls -la .gpu
if ! ls .gl/*.deb >/dev/null 2>&1; then
    mkdir -p .gl /tmp/amd64/partial
    o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
    # shellcheck disable=SC2086
    apt-get $o update
    # shellcheck disable=SC2086
    (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
fi
