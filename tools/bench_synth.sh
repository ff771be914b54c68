#!/usr/bin/env bash
# Benchmark: phantom generation throughput at a fixed output size (default 512 px), median of 3 runs.
# Usage: tools/bench_synth.sh [images-per-class] [size]
set -euo pipefail
cd "$(dirname "$0")/.."
per_class=${1:-100}
size=${2:-512}
cargo build --release --quiet
bin=target/release/tumornet
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
rates=()
for run in 1 2 3; do
  rm -rf "$out/p"
  line=$("$bin" --quiet synth "$out/p" --train "$per_class" --test 0 --min-size "$size" --max-size "$size" --seed "$run")
  rate=$(sed -E 's/.*\(([0-9.]+) images\/s\).*/\1/' <<<"$line")
  echo "run $run: $line" >&2
  rates+=("$rate")
done
median=$(printf '%s\n' "${rates[@]}" | sort -n | sed -n 2p)
echo "synth ${size}px: ${rates[*]} images/s; median ${median} images/s ($(nproc) cores, $(date -u +%F))"
