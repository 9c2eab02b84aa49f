#!/usr/bin/env bash
# The HIP backend's checks on the device machine, in one call (docs/HIP.md): install the carried wheels (.whl/)
# and this checkout without network, run `pytest -m gpu`, time the kernels and `rocmforge bench`, print a short
# table last. Logs and JSON go to $OUT (the device tool's output folder) or /tmp/rf-gpu.
#   scripts/gpu-check.sh [tests|bench|products|all]   (default all; products: the decode products' table alone,
#   rf_mmv/rf_mmq at 1-64 rows and 1B/8B shapes, beside the integer-dot kernels at one row)
set -uo pipefail
cd "$(dirname "$0")/.."
WHAT="${1:-all}"
OUT="${OUT:-/tmp/rf-gpu}"
LOGS=/tmp/rf-gpu-logs  # everything raw, returned as one archive (a device call returns at most 8 files)
mkdir -p "$OUT" "$LOGS"
export PYTHONUNBUFFERED=1
PY=python3
t0=$(date +%s)

. scripts/device-install.sh
rf_device_install "$LOGS/install.log" "$PY" || exit 1
echo "installed in $(( $(date +%s) - t0 )) s"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null

status=0
if [ "$WHAT" = all ] || [ "$WHAT" = tests ]; then
    # Only the files that hold GPU tests: others import what this machine lacks (openai, for one).
    $PY -m pytest -m gpu -q -p no:cacheprovider -rfs $(grep -rl "mark.gpu" tests --include="test_*.py") 2>&1 | tee "$OUT/pytest-gpu.log" | tail -40
    status=${PIPESTATUS[0]}
fi
if [ "$WHAT" = all ] || [ "$WHAT" = bench ]; then
    $PY tests/hip/kernel_bench.py "$OUT/kernel_bench.json" 2>&1 | tee "$LOGS/kernel_bench.log"
    if $PY -c "import rocmforge_core.cli.bench" 2>/dev/null; then
        for q in Q4_0 Q4_K_M Q8_0; do
            $PY -m rocmforge_core.cli.bench --synthetic "llama-1b:$q" -p 512 -n 128 -r 5 --backend hip --json \
                >"$LOGS/bench-$q.json" 2>"$LOGS/bench-$q.err" || tail -5 "$LOGS/bench-$q.err"
            # the same without the integer tile products (the integer-dot kernels), to keep their effect measured
            ROCMFORGE_HIP_MMA=0 $PY -m rocmforge_core.cli.bench --synthetic "llama-1b:$q" -n 128 -p 0 -r 3 \
                --backend hip --json >"$LOGS/bench-$q-no-mma.json" 2>"$LOGS/bench-$q-no-mma.err" || true
        done
    fi
fi

if [ "$WHAT" = products ]; then
    $PY tests/hip/kernel_bench.py "$OUT/products.json" products 2>&1 | tee "$LOGS/products.log"
    ROCMFORGE_HIP_MMA=0 $PY tests/hip/kernel_bench.py "$OUT/products-no-mma.json" products 2>&1 \
        | grep "m=1 " >"$LOGS/products-no-mma.log"
fi

echo
echo "== summary ($(( $(date +%s) - t0 )) s) =="
tar czf "$OUT/logs.tgz" -C "$LOGS" . 2>/dev/null
grep -E "^(FAILED|ERROR)|passed|failed" "$OUT/pytest-gpu.log" 2>/dev/null | tail -12
grep -E "all weights of one token|m=(8|32|64) |m=512|attention|sample|decode step|prefill step" "$LOGS/kernel_bench.log" 2>/dev/null
cat "$LOGS/products.log" 2>/dev/null
sed 's/^/integer-dot: /' "$LOGS/products-no-mma.log" 2>/dev/null
for f in "$LOGS"/bench-*.json; do
    [ -s "$f" ] && $PY -c "import json,sys; d=json.load(open('$f')); print(' '.join(f\"{r['test']}={r['avg_ts']:.0f}±{r['stddev_ts']:.0f} t/s\" for r in d['results']), '$f'.split('bench-')[1])" 2>/dev/null
done
exit $status
