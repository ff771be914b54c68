#!/usr/bin/env bash
# Build tumornet with the `tch` feature (burn's LibTorch backend: PyTorch's own CPU kernels and cuDNN) without
# internet beyond PyPI, against the libtorch inside a PyPI `torch` wheel of the same version as the machine that
# will run it (ask it: python3 -c 'import torch; print(torch.__version__)'). Only the Rust binary travels; at run
# time it finds that machine's own libtorch:
#   LD_LIBRARY_PATH=$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__))')/lib \
#     tumornet --device libtorch-cuda bench --mode eval
#
#   tools/tch_build.sh          build ../target-tch/x86_64-unknown-linux-gnu/release/tumornet, packed as .gpu/tumornet-tch.xz;
#                               measured on the GPU machine with the session's device tool:
#                               run(command="GPU_BACKEND=libtorch-cuda bash tools/gpu_device.sh",
#                                   carry=[".gpu/tumornet-tch.xz"], timeout_s=600)
#   tools/tch_build.sh test     build, then run tests/libtorch.rs here (LibTorch on the CPU against the default
#                               backend); it needs that torch installed here, in TORCH_VENV (default /opt/t211:
#                               python3 -m venv /opt/t211 && /opt/t211/bin/pip install torch==$TORCH_VERSION)
#
# TORCH_VERSION (default 2.11.0) picks the wheel; it is downloaded once into ../torch-wheels and its lib/ and
# include/ unpacked into ../libtorch-$TORCH_VERSION. tch 0.22 is written for PyTorch 2.9; its C++ wrapper builds
# against 2.11 too, so the version check is bypassed. The wheel's libtorch_cuda links CUDA libraries that are not
# here: the linker is told to leave their symbols to the run-time loader, and to keep libtorch_cuda as a
# dependency although no symbol of it is named (else the binary would never see the GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
version=${TORCH_VERSION:-2.11.0}
wheels=$PWD/../torch-wheels
libtorch=$PWD/../libtorch-$version
target=${CARGO_TARGET_DIR:-$PWD/../target-tch}

if [ ! -f "$libtorch/lib/libtorch_cpu.so" ]; then
    mkdir -p "$wheels" "$libtorch"
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.11 --platform manylinux_2_28_x86_64 \
        -d "$wheels" "torch==$version"
    wheel=$(ls "$wheels"/torch-"$version"-*.whl | head -1)
    tmp=$(mktemp -d)
    unzip -q "$wheel" 'torch/lib/*' 'torch/include/*' 'torch/version.py' -d "$tmp"
    mv "$tmp/torch/lib" "$tmp/torch/include" "$libtorch/"
    python3 -c "exec(open('$tmp/torch/version.py').read()); print(__version__)" > "$libtorch/build-version"
    rm -rf "$tmp"
fi
echo "libtorch $(cat "$libtorch/build-version") in $libtorch"

export LIBTORCH=$libtorch LIBTORCH_BYPASS_VERSION_CHECK=1 CARGO_TARGET_DIR=$target
link="-C link-arg=-Wl,--allow-shlib-undefined"
if [ -f "$libtorch/lib/libtorch_cuda.so" ]; then
    link="$link -C link-arg=-Wl,--no-as-needed -C link-arg=-ltorch_cuda"
fi
# With --target, RUSTFLAGS reach only what runs on the target, not build scripts and proc macros.
triple=x86_64-unknown-linux-gnu
export RUSTFLAGS="${RUSTFLAGS:-} -L native=$libtorch/lib $link"
cargo build --release --locked --features tch --target $triple
mkdir -p .gpu
strip -o .gpu/tumornet-tch "$target/$triple/release/tumornet"
xz -T2 -6 -f .gpu/tumornet-tch
ls -la .gpu

if [ "${1:-}" = test ]; then
    venv=${TORCH_VENV:-/opt/t211}
    lib=$("$venv/bin/python" -c 'import torch, os; print(os.path.dirname(torch.__file__))')/lib
    LD_LIBRARY_PATH=$lib cargo test --release --locked --features tch --target $triple --test libtorch -- --nocapture
fi
