#!/usr/bin/env bash
# Per-kernel device time of one captured decode step of the synthetic llama-1b (NVIDIA platform, Nsight Compute):
#   scripts/decode-profile.sh [TYPE ...]   (default Q4_0; run on the device machine after scripts/gpu-check.sh
#   has installed the tree, or with PYTHONPATH pointing at the carried wheels)
# ncu runs kernels one at a time, so the sum is device busy time without the gaps between kernels.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/rf-gpu}"
mkdir -p "$OUT"
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
for t in "${@:-Q4_0}"; do
    "$NCU" --clock-control none --profile-from-start off --metrics gpu__time_duration.sum,dram__bytes_read.sum \
        --csv --log-file "$OUT/ncu-$t.csv" python3 tests/hip/decode_profile.py "$t" >"$OUT/ncu-$t.log" 2>&1 \
        || tail -20 "$OUT/ncu-$t.log"
    python3 tests/hip/decode_profile.py --summarize "$OUT/ncu-$t.csv"
done
