#!/usr/bin/env bash
# Single-stream speed of rocmforge against llama.cpp on one machine, in one call (docs/PERF.md, Single stream
# side by side): `rocmforge bench` and llama-bench (pp512, tg128, and tg128 after filling the context to each
# depth of RF_BENCH_DEPTHS for the models of RF_BENCH_DEPTH_MODELS) over the same synthetic GGUF files of every
# benchmarked architecture with the Llama-3 tokenizer, then a side-by-side table with ratios.
#
#   scripts/stage-anchors.sh               # here, once: the llama.cpp source, the vocabulary and the wheels
#   device: scripts/single-stream-bench.sh (carry .carry and .whl)
#   CPU run: RF_BENCH_CUDA=0 RF_BENCH_MODELS="llama-tiny:Q4_K_M qwen2-tiny:Q4_0 gemma3-tiny:Q4_K_M" \
#            RF_BENCH_DEPTH_MODELS=llama-tiny:Q4_K_M RF_BENCH_DEPTHS=256,1024 RF_BENCH_PP=64 RF_BENCH_TG=16 \
#            RF_BENCH_REPS=2 RF_BENCH_THREADS=1 scripts/single-stream-bench.sh
#
# As scripts/serving-bench.sh: the llama.cpp build starts first, in the background, while rocmforge installs,
# writes the models and measures; every phase runs under a timeout cut to a deadline (scripts/bench-common.sh).
# Both engines use an f16 KV cache (llama-bench's default). The models run in the order given: the first ones
# are measured on both sides before later ones start, should time run short. summary.txt, results.json and
# logs.tgz go to $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
MODELS=${RF_BENCH_MODELS:-"llama-8b:Q4_K_M llama-8b:Q4_0 llama-8b:Q8_0 llama-1b:Q4_0 qwen2-7b:Q4_K_M qwen3-8b:Q4_K_M gemma3-4b:Q4_K_M"}
DEPTH_MODELS=${RF_BENCH_DEPTH_MODELS:-llama-8b:Q4_K_M}  # these also get tg at each depth
DEPTHS=${RF_BENCH_DEPTHS:-4096,16384}
WORK=${RF_BENCH_WORK:-/tmp/rf-single-stream-bench}
. scripts/bench-common.sh

start_llama_build llama-bench
install_rocmforge
write_models $MODELS

at_depth() { [[ " $DEPTH_MODELS " == *" ${1/-/:} "* ]] || [[ " ${DEPTH_MODELS//:/-} " == *" $1 "* ]]; }

rocmforge_side() {
    for name in "${names[@]}"; do
        model=$WORK/models/$name.gguf
        timeout "$(budget 150)" "$PY" -m rocmforge_core.cli.bench --model "$model" -p "$PP" -n "$TG" -r "$REPS" \
            -ctk f16 --backend "$BACKEND" $(thr --threads) --json >"$RAW/rf-bench-$name.json" 2>"$RAW/rf-bench-$name.err"
        log "rocmforge bench $name done (rc $?)"
        if at_depth "$name"; then
            timeout "$(budget 150)" "$PY" -m rocmforge_core.cli.bench --model "$model" -p 0 -n "$TG" -r "$REPS" \
                -d "$DEPTHS" -ctk f16 --backend "$BACKEND" $(thr --threads) --json \
                >"$RAW/rf-bench-$name-depth.json" 2>"$RAW/rf-bench-$name-depth.err"
            log "rocmforge bench $name at depth $DEPTHS done (rc $?)"
        fi
    done
}

llama_side() {
    local bin=$BUILD/bin
    for name in "${names[@]}"; do
        model=$WORK/models/$name.gguf
        timeout "$(budget 120)" "$bin/llama-bench" -m "$model" -p "$PP" -n "$TG" -r "$REPS" $NGL $(thr -t) -o json \
            >"$RAW/llama-bench-$name.json" 2>"$RAW/llama-bench-$name.err"
        log "llama-bench $name done (rc $?)"
        if at_depth "$name"; then
            timeout "$(budget 120)" "$bin/llama-bench" -m "$model" -p 0 -n "$TG" -d "$DEPTHS" -r "$REPS" $NGL \
                $(thr -t) -o json >"$RAW/llama-bench-$name-depth.json" 2>"$RAW/llama-bench-$name-depth.err"
            log "llama-bench $name at depth $DEPTHS done (rc $?)"
        fi
    done
}

if [ "$WAIT_BUILD" = 1 ]; then
    wait_build && built=1 || built=0
    rocmforge_side
else
    RESERVE=${RF_BENCH_LLAMA_RESERVE:-200} rocmforge_side
    wait_build && built=1 || built=0
fi
[ "$built" = 1 ] && llama_side

log "done"
print_table "${names[@]}"
