#!/usr/bin/env bash
# Same-sitting llama.cpp anchor for the cpu backend (docs/PERF.md, issue 8): pp512 and tg128 of llama.cpp
# (through llama-cpp-python, built from its PyPI sdist for this CPU only) and of `rocmforge bench --backend cpu`
# on the same models with the same thread count, one right after the other, printed as one table.
#
#   scripts/llamacpp-anchor.sh [MODEL.gguf ...]     (default: SmolLM2-135M Q4_1 and gemma-3-270m Q4_K_M)
#   THREADS=2 REPS=3 ROUNDS=1 ANCHOR_VENV=/tmp/llamacpp-anchor/venv-cpu  (environment, with these defaults)
#   ROUNDS=N repeats the pair (llama.cpp, then rocmforge) N times per model, one table row per round: on a shared
#   machine the spread between rounds says more than one round's standard deviation
#   OURS_ENV="OMP_WAIT_POLICY=ACTIVE"   extra environment for the rocmforge run only
#
# llama-cpp-python is not a dependency of rocmforge: it lives in a scratch venv under /tmp, built once (about 8
# minutes on 2 cores) and reused by later runs. Definitions mirror llama-bench: pp512 = one 512-token batch of
# random tokens from an empty context (n_batch = n_ubatch = 512), tg128 = 128 single-token decodes from an empty
# context, each waited for; one warm-up run, then REPS runs; mean and standard deviation of tokens per second.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
THREADS=${THREADS:-2}
REPS=${REPS:-3}
ROUNDS=${ROUNDS:-1}
VENV=${ANCHOR_VENV:-/tmp/llamacpp-anchor/venv-cpu}
PY=$ROOT/.venv/bin/python

if [ $# -eq 0 ]; then
    [ -f "$ROOT/models/gemma-3-270m-q4_k_m.gguf" ] || make -C "$ROOT" -s models >/dev/null
    set -- "$("$PY" -c 'from rocmforge_core.default_model import default_model_path; print(default_model_path())')" \
           "$ROOT/models/gemma-3-270m-q4_k_m.gguf"
fi

if ! "$VENV/bin/python" -c 'import llama_cpp' 2>/dev/null; then
    echo "building llama-cpp-python (CPU only, native SIMD) into $VENV ..." >&2
    python3 -m venv "$VENV"
    # The host's SIMD features without AMX (scripts/ggml-cpu-flags.sh says why)
    CMAKE_ARGS="$("$ROOT/scripts/ggml-cpu-flags.sh") \
-DGGML_CUDA=OFF -DGGML_VULKAN=OFF -DGGML_BLAS=OFF -DGGML_OPENMP=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
-DLLAMA_BUILD_TOOLS=OFF -DLLAMA_CURL=OFF" \
    CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) MAKEFLAGS=-j$(nproc) \
        "$VENV/bin/pip" install -q --no-binary llama-cpp-python llama-cpp-python
fi

LLAMA_BENCH=$(cat <<'EOF'
import sys, time, random, statistics, ctypes
import llama_cpp as L

path, threads, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
L.llama_backend_init()
quiet = L.llama_log_callback(lambda level, text, data: None)  # kept referenced: C holds the pointer
L.llama_log_set(quiet, ctypes.c_void_p(0))
mp = L.llama_model_default_params()
model = L.llama_model_load_from_file(path.encode(), mp)
cp = L.llama_context_default_params()
cp.n_ctx, cp.n_batch, cp.n_ubatch = 1024, 512, 512
cp.n_threads = cp.n_threads_batch = threads
ctx = L.llama_init_from_model(model, cp)
vocab = L.llama_model_get_vocab(model)
n_vocab = L.llama_vocab_n_tokens(vocab)
rng = random.Random(0)

def clear():
    if hasattr(L, "llama_memory_clear"):
        L.llama_memory_clear(L.llama_get_memory(ctx), True)
    else:
        L.llama_kv_self_clear(ctx)

def decode(tokens, pos0):
    # as llama-bench: llama_batch_get_one (positions follow the sequence's cache, logits of the last token)
    arr = (L.llama_token * len(tokens))(*tokens)
    if L.llama_decode(ctx, L.llama_batch_get_one(arr, len(tokens))) != 0:
        raise SystemExit("llama_decode failed")
    L.llama_synchronize(ctx)

def pp(n):
    clear()
    toks = [rng.randrange(n_vocab) for _ in range(n)]
    t0 = time.perf_counter(); decode(toks, 0); return n / (time.perf_counter() - t0)

def tg(n):
    clear()
    t0 = time.perf_counter()
    for i in range(n):
        decode([rng.randrange(n_vocab)], i)
    return n / (time.perf_counter() - t0)

for name, fn, n in (("pp512", pp, 512), ("tg128", tg, 128)):
    fn(n)  # warm-up, as llama-bench
    r = [fn(n) for _ in range(reps)]
    sd = statistics.pstdev(r)  # as rocmforge bench (numpy's std)
    print(f"{name}\t{statistics.mean(r):.1f}\t{sd:.1f}")
EOF
)

echo "date $(date -u '+%F %T') UTC, $(nproc) CPUs, threads $THREADS, reps $REPS, rounds $ROUNDS, rocmforge env '${OURS_ENV:-}', load $(cut -d' ' -f1-3 /proc/loadavg)"
rows=()
for round in $(seq "$ROUNDS"); do
for model in "$@"; do
    name=$(basename "$model" .gguf)
    llama=$("$VENV/bin/python" -c "$LLAMA_BENCH" "$model" "$THREADS" "$REPS") || {
        echo "llama.cpp run failed on $model" >&2; exit 1; }
    ours=$(env ${OURS_ENV:-} "$ROOT/.venv/bin/rocmforge" bench --model "$model" -p 512 -n 128 -r "$REPS" --backend cpu \
           --threads "$THREADS" --json)
    for test in pp512 tg128; do
        l=$(awk -v t=$test '$1 == t {printf "%s ± %s", $2, $3}' <<<"$llama")
        lm=$(awk -v t=$test '$1 == t {print $2}' <<<"$llama")
        o=$("$PY" -c "
import json, sys
r = next(r for r in json.load(sys.stdin)['results'] if r['test'] == '$test')
print(f\"{r['avg_ts']:.1f} ± {r['stddev_ts']:.1f} {r['avg_ts'] / $lm:.2f}\")" <<<"$ours")
        rows+=("$(printf '| %s | %s | %s | %s | %s | %sx |' "$round" "$name" "$test" "$l" "${o% *}" "${o##* }")")
    done
done
done
echo "| round | model | test | llama.cpp t/s | rocmforge cpu t/s | ratio |"
echo "|---|---|---|--:|--:|--:|"
printf '%s\n' "${rows[@]}"
echo "load after $(cut -d' ' -f1-3 /proc/loadavg), $(date -u '+%T') UTC"
