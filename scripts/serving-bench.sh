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
# under a timeout cut to a deadline (scripts/bench-common.sh), so the call ends in time with the table of what
# finished. The table is printed last; results.json, summary.txt and logs.tgz (every raw JSON and log) go to $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
MODELS=${RF_BENCH_MODELS:-llama-1b:Q4_K_M}     # SHAPE:TYPE ..., shapes and types of rocmforge bench
CLIENTS=${RF_BENCH_CLIENTS:-1,8,32}
REQUESTS=${RF_BENCH_REQUESTS:-64}
TOKENS=${RF_BENCH_TOKENS:-128}                 # completion tokens per request (ignore_eos)
WORK=${RF_BENCH_WORK:-/tmp/rf-bench}           # llama.cpp source and build, model files (shared)
. scripts/bench-common.sh
NP=$(tr , '\n' <<<"$CLIENTS" | sort -n | tail -1)  # server slots: the largest client count
CTX=$(( TOKENS + 128 ))                        # context per slot: the longest prompt (63 tokens) + completion

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

start_llama_build "llama-bench llama-quantize llama-batched-bench llama-server"
install_rocmforge
gpu_tests 240
write_models $MODELS

rocmforge_side() {
    for name in "${names[@]}"; do
        model=$WORK/models/$name.gguf
        bench_rocmforge "$name" "" 240 -p "$PP" -n "$TG"
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
        bench_llama "$name" "" 180 -p "$PP" -n "$TG"
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

measure_both 150
print_table "${names[@]}"
