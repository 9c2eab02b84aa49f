#!/usr/bin/env bash
# rocmforge against llama.cpp on one machine, in one call (docs/PERF.md, Side by side with llama.cpp): pp/tg
# of `rocmforge bench` and llama-bench, and serving throughput of `rocmforge serve` and llama-server under the
# same load (python -m rocmforge_core.serve.loadtest) at several client counts, beside llama-batched-bench's
# decode rate per batch size (no HTTP), over the same synthetic GGUF files with the Llama-3 tokenizer.
#
#   scripts/stage-anchors.sh          # here, once: the llama.cpp source, the vocabulary and the wheels
#   device: scripts/serving-bench.sh  (carry .carry and .whl)
#   CPU run: RF_BENCH_CUDA=0 RF_BENCH_MODELS=llama-tiny:Q4_K_M RF_BENCH_REQUESTS=8 RF_BENCH_TOKENS=16 \
#            RF_BENCH_CLIENTS=1,4 RF_BENCH_PP=64 RF_BENCH_TG=16 RF_BENCH_REPS=2 RF_BENCH_THREADS=1 \
#            scripts/serving-bench.sh
#
# The llama.cpp build (4-5 min for CUDA on 16 cores) starts first, in the background and niced, while rocmforge
# installs and measures; llama.cpp is measured once it is built. Every phase prints its elapsed time and runs
# under a timeout cut to a deadline (RF_BENCH_DEADLINE s after the start), so the call ends in time with the
# table of what finished. The table is printed last; results.json, summary.txt and logs.tgz (every raw JSON
# and log) go to $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
T0=$(date +%s)

CUDA=${RF_BENCH_CUDA:-1}
MODELS=${RF_BENCH_MODELS:-llama-1b:Q4_K_M}     # SHAPE:TYPE ..., shapes and types of rocmforge bench
CLIENTS=${RF_BENCH_CLIENTS:-1,8,32}
REQUESTS=${RF_BENCH_REQUESTS:-64}
TOKENS=${RF_BENCH_TOKENS:-128}                 # completion tokens per request (ignore_eos)
PP=${RF_BENCH_PP:-512}
TG=${RF_BENCH_TG:-128}
REPS=${RF_BENCH_REPS:-5}
DEADLINE=${RF_BENCH_DEADLINE:-570}
WAIT_BUILD=${RF_BENCH_WAIT_BUILD:-0}           # 1: measure rocmforge only after the build (no CPU contention)
WORK=${RF_BENCH_WORK:-/tmp/rf-serving-bench}   # llama.cpp source and build, model files
OUT=${OUT:-$WORK/out}
if [ "$CUDA" = 1 ]; then BACKEND=${RF_BENCH_BACKEND:-hip}; else BACKEND=${RF_BENCH_BACKEND:-cpu}; fi
THREADS=${RF_BENCH_THREADS:-}                  # CPU threads of both engines (default: each engine's own)
JOBS=${RF_BENCH_JOBS:-$(( $(nproc) > 4 ? $(nproc) - 2 : $(nproc) ))}
NP=$(tr , '\n' <<<"$CLIENTS" | sort -n | tail -1)  # server slots: the largest client count
CTX=$(( TOKENS + 128 ))                        # context per slot: the longest prompt (63 tokens) + completion
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
RAW=$WORK/raw
mkdir -p "$OUT" "$RAW" "$WORK/models"
rm -f "$RAW"/*
export PYTHONUNBUFFERED=1

log() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a "$RAW/phases.txt"; }
left() { echo $(( DEADLINE - ($(date +%s) - T0) )); }
# Seconds a phase may take: its own bound, cut to what the deadline leaves after 20 s for the table and RESERVE
# for the phases still to come (llama.cpp's, while rocmforge's run first).
RESERVE=0
budget() { local l=$(( $(left) - 20 - RESERVE )); l=$(( l < 1 ? 1 : l )); echo $(( $1 < l ? $1 : l )); }
RF_MAIN='import sys; from rocmforge_core.cli import main; sys.exit(main())'  # `rocmforge`, wherever pip put it
thr() { [ -n "$THREADS" ] && echo "$1 $THREADS"; }

# Processes started here, each the leader of its own process group (setsid): the build and one server at a time.
BUILD_PID="" SERVER_PID=""
stop() {  # PID: its process group gets SIGINT, then SIGKILL after 10 s
    local pid=$1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill -INT -- "-$pid" 2>/dev/null || kill -INT "$pid"
    for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }; sleep 0.5; done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid"
    wait "$pid" 2>/dev/null
}
command -v setsid >/dev/null || setsid() { "$@"; }  # without it, stop() reaches the leader alone
finish() {
    stop "$SERVER_PID"; stop "$BUILD_PID"
    tar czf "$OUT/logs.tgz" -C "$WORK" raw 2>/dev/null
}
trap finish EXIT

HEALTH='import sys, urllib.request
try:
    sys.exit(urllib.request.urlopen(sys.argv[1] + "/health", timeout=5).status != 200)
except OSError:
    sys.exit(1)'
wait_ready() {  # URL SECONDS: until /health answers 200; fails when the server exits or time runs out
    local url=$1 end=$(( $(date +%s) + $2 ))
    while [ "$(date +%s)" -lt "$end" ]; do
        kill -0 "$SERVER_PID" 2>/dev/null || return 1
        "$PY" -c "$HEALTH" "$url" && return 0
        sleep 0.5
    done
    return 1
}

serve_and_load() {  # NAME URL: wait for the server just started, run the load, stop the server
    local name=$1 url=$2
    if wait_ready "$url" "$(budget 240)"; then
        log "$name ready"
        timeout "$(budget 300)" "$PY" -m rocmforge_core.serve.loadtest --url "$url" --clients "$CLIENTS" \
            --requests "$REQUESTS" --max-tokens "$TOKENS" --timeout 300 >"$RAW/$name.json" 2>"$RAW/$name.err"
        log "$name load done (rc $?)"
    else
        log "$name did not get ready"; tail -5 "$RAW/$name.log"
    fi
    stop "$SERVER_PID"; SERVER_PID=""
}

# -- llama.cpp: build in the background ------------------------------------------------------------------
for f in .carry/llamacpp-src.tgz .carry/ggml-vocab-llama-bpe.gguf; do
    [ -f "$f" ] || { echo "missing $f: run scripts/stage-anchors.sh here and carry .carry"; exit 1; }
done
VOCAB=$ROOT/.carry/ggml-vocab-llama-bpe.gguf
[ -d "$WORK/llama.cpp" ] || tar xzf .carry/llamacpp-src.tgz -C "$WORK"
if [ "$CUDA" = 1 ]; then
    command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
    BUILD=$WORK/llama-build-cuda
    FLAGS="-DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90"
    NGL="-ngl 99"
else
    BUILD=$WORK/llama-build-cpu
    FLAGS="-DGGML_CUDA=OFF $(scripts/ggml-cpu-flags.sh) -DGGML_OPENMP=ON"
    NGL=""
fi
# LLAMA_BUILD_APP=OFF: the trimmed source has no app/ folder, which the default (ON) would add
setsid nice -n 19 bash -c "cmake -S '$WORK/llama.cpp' -B '$BUILD' -G Ninja -DCMAKE_BUILD_TYPE=Release $FLAGS \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON \
    -DLLAMA_BUILD_APP=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DBUILD_SHARED_LIBS=OFF \
    && cmake --build '$BUILD' -j$JOBS --target llama-bench llama-quantize llama-batched-bench llama-server" \
    >"$RAW/llama-build.log" 2>&1 &
BUILD_PID=$!
log "llama.cpp build started ($( [ "$CUDA" = 1 ] && echo CUDA || echo CPU), -j$JOBS)"

# -- rocmforge: install (where it is not), write the models ----------------------------------------------
if ! "$PY" -c "import importlib.metadata as m, gguf, starlette, uvicorn; m.version('rocmforge')" 2>/dev/null; then
    . scripts/device-install.sh
    RF_SITE=$WORK/site rf_device_install "$RAW/install.log" "$PY" || exit 1
    log "rocmforge installed"
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | tee "$RAW/gpu.txt"
names=()
for spec in $MODELS; do
    name=${spec/:/-}
    names+=("$name")
    "$PY" -m rocmforge_core.cli.bench --write-synthetic "$spec" --vocab-from "$VOCAB" \
        --out "$WORK/models/$name.gguf" >/dev/null 2>"$RAW/write-$name.err" || { cat "$RAW/write-$name.err"; exit 1; }
    log "wrote $name.gguf ($(du -m "$WORK/models/$name.gguf" | cut -f1) MB)"
done

wait_build() {
    while kill -0 "$BUILD_PID" 2>/dev/null && [ "$(left)" -gt 60 ]; do sleep 2; done
    if kill -0 "$BUILD_PID" 2>/dev/null; then
        log "llama.cpp build not done by the deadline: stopped"; stop "$BUILD_PID"; BUILD_PID=""; return 1
    fi
    wait "$BUILD_PID"; local rc=$?; BUILD_PID=""
    [ "$rc" = 0 ] || { log "llama.cpp build failed (rc $rc)"; tail -30 "$RAW/llama-build.log"; return 1; }
    log "llama.cpp built"
}

rocmforge_side() {
    for name in "${names[@]}"; do
        model=$WORK/models/$name.gguf
        timeout "$(budget 240)" "$PY" -m rocmforge_core.cli.bench --model "$model" -p "$PP" -n "$TG" -r "$REPS" \
            --backend "$BACKEND" $(thr --threads) --json >"$RAW/rf-bench-$name.json" 2>"$RAW/rf-bench-$name.err"
        log "rocmforge bench $name done (rc $?)"
        setsid "$PY" -c "$RF_MAIN" serve --model "$model" \
            --backend "$BACKEND" $(thr --threads) --parallel "$NP" --ctx-size "$CTX" \
            --max-queue $(( NP > 64 ? NP : 64 )) --port 18080 --log-level warning >"$RAW/rf-serve-$name.log" 2>&1 &
        SERVER_PID=$!
        serve_and_load "rf-serve-$name" http://127.0.0.1:18080
    done
}

llama_side() {
    local bin=$BUILD/bin
    for name in "${names[@]}"; do
        model=$WORK/models/$name.gguf
        timeout "$(budget 180)" "$bin/llama-bench" -m "$model" -p "$PP" -n "$TG" -r "$REPS" $NGL $(thr -t) -o json \
            >"$RAW/llama-bench-$name.json" 2>"$RAW/llama-bench-$name.err"
        log "llama-bench $name done (rc $?)"
        timeout "$(budget 180)" "$bin/llama-batched-bench" -m "$model" -c $(( NP * (128 + TOKENS) )) -b 2048 -ub 512 \
            -npp 128 -ntg "$TOKENS" -npl "$CLIENTS" $NGL $(thr -t) --output-format jsonl \
            >"$RAW/llama-batched-$name.jsonl" 2>"$RAW/llama-batched-$name.err"
        log "llama-batched-bench $name done (rc $?)"
        setsid "$bin/llama-server" -m "$model" -np "$NP" -c $(( NP * CTX )) $NGL $(thr -t) --host 127.0.0.1 \
            --port 18081 >"$RAW/llama-server-$name.log" 2>&1 &
        SERVER_PID=$!
        serve_and_load "llama-server-$name" http://127.0.0.1:18081
    done
}

if [ "$WAIT_BUILD" = 1 ]; then
    wait_build && built=1 || built=0
    rocmforge_side
else
    RESERVE=150 rocmforge_side
    wait_build && built=1 || built=0
fi
[ "$built" = 1 ] && llama_side

log "done"
"$PY" scripts/serving-bench-table.py "$RAW" "${names[@]}" --json "$OUT/results.json" >"$RAW/table.md"
cat "$RAW/phases.txt" "$RAW/table.md" >"$OUT/summary.txt"
echo
cat "$RAW/table.md"
