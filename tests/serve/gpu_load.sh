#!/usr/bin/env bash
# The serving load test on the device machine (docs/PERF.md, Serving): a synthetic 1B-class llama (F16 weights,
# the test tokenizer), `rocmforge serve --backend BACKEND --parallel 32`, and the loadtest command with 32 clients.
#   bash tests/serve/gpu_load.sh [BACKEND=hip] [REQUESTS=128] [MAX_TOKENS=64]
# Carry .whl, made here by scripts/fetch-device-wheels.sh.
set -uo pipefail
OUT="${OUT:-/tmp/rf-serve}"; mkdir -p "$OUT"; export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site
PKGS=". $(for d in plugins/*/ plugins/formats/*/; do [ -f "$d/pyproject.toml" ] && printf '%s ' "$d"; done)"
python3 -m pip install -q --no-index --no-deps --no-build-isolation $(for p in $PKGS; do printf -- '-e %s ' "$p"; done) >"$OUT/install.log" 2>&1 || { tail -20 "$OUT/install.log"; exit 1; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 - <<'PY'
import sys, time; sys.path.insert(0, "tests/serve")
from tiny_model import write_chat_model
from rocmforge_core.models.synthetic import TinyConfig
t = time.time()
write_chat_model("/tmp/llama-1b-f16.gguf", TinyConfig(n_layers=16, d_model=2048, n_heads=32, n_kv_heads=8, head_dim=64, d_ff=8192, context_length=1024, tied_output=False, dtype="F16"))
print("model written in", round(time.time() - t, 1), "s")
PY
BACKEND="${1:-hip}"
python3 -c "import sys; from rocmforge_core.cli import main; sys.exit(main())" serve --model /tmp/llama-1b-f16.gguf --backend "$BACKEND" --parallel 32 --port 8080 --log-level warning >"$OUT/server.log" 2>&1 &
SRV=$!
for i in $(seq 600); do curl -sf localhost:8080/health >/dev/null && break; kill -0 $SRV 2>/dev/null || { tail -20 "$OUT/server.log"; exit 1; }; sleep 0.5; done
echo "ready after $((i / 2)) s"
python3 -m rocmforge_core.serve.loadtest --url http://127.0.0.1:8080 --clients 32 --requests "${2:-128}" --max-tokens "${3:-64}" | tee "$OUT/load.json"
curl -s localhost:8080/metrics > "$OUT/metrics.txt"; grep -E "^rocmforge_(decode|kv_blocks_used|sequences_running|process_res|fallback)" "$OUT/metrics.txt"
kill -INT $SRV; wait $SRV; tail -5 "$OUT/server.log"
