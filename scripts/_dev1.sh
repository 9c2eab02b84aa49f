set -uo pipefail
. scripts/device-install.sh
rf_device_install /tmp/install.log python3 || { tail -30 /tmp/install.log; exit 1; }
python3 -m pytest -m gpu -q -p no:cacheprovider -rfs tests/hip/test_gpu.py -x -k "${TESTS:-batch_invariant}" 2>&1 | tail -5
for mma in ${MMAS:-1}; do for q in Q4_K_M Q4_0; do
ROCMFORGE_HIP_MMA=$mma timeout 120 python3 -m rocmforge_core.cli.bench --synthetic "llama-1b:$q" -p 512 -n 128 -r 3 --backend hip --json > /tmp/b.json 2>/tmp/b.err || tail -3 /tmp/b.err
python3 -c "import json; d=json.load(open('/tmp/b.json')); print('mma=$mma $q', ' '.join(f\"{r['test']}={r['avg_ts']:.0f}\" for r in d['results']))"
done; done
timeout 150 python3 tests/hip/kernel_bench.py /tmp/kb.json 2>&1 | grep -E "matvec|decode step" | grep -E "ffn_gate|output|all weights|decode step"
