#!/usr/bin/env bash
# Per-kernel device time of one captured decode step of a synthetic model (NVIDIA platform, Nsight Compute):
#   scripts/decode-profile.sh [SPEC[@DEPTH] ...]   (SPEC: SHAPE:TYPE or a TYPE of llama-1b, default Q4_0; DEPTH:
#   cached positions, default 64; run on the device machine after scripts/gpu-check.sh or
#   scripts/device-install.sh has installed the tree)
# ncu runs kernels one at a time, so the sum is device busy time without the gaps between kernels.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/rf-gpu}"
mkdir -p "$OUT"
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
PY=${PY:-python3}
export PYTHONPATH=${RF_SITE:-/tmp/site}${PYTHONPATH:+:$PYTHONPATH}  # the carried wheels (device-install.sh)
for arg in "${@:-Q4_0}"; do
    spec=${arg%@*} depth=64; [[ $arg == *@* ]] && depth=${arg#*@}
    t=${arg//[:@]/-}
    "$NCU" --clock-control none --profile-from-start off --metrics gpu__time_duration.sum,dram__bytes_read.sum \
        --csv --log-file "$OUT/ncu-$t.csv" "$PY" tests/hip/decode_profile.py "$spec" "$depth" >"$OUT/ncu-$t.log" 2>&1 \
        || tail -20 "$OUT/ncu-$t.log"
    echo "== $arg"
    "$PY" tests/hip/decode_profile.py --summarize "$OUT/ncu-$t.csv"
done
