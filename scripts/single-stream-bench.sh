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
# RF_BENCH_GPU_TESTS=1 runs `pytest -m gpu` first, while llama.cpp builds. Both engines use an f16 KV cache
# (llama-bench's default). The models run in the order given: the first ones are measured on both sides before
# later ones start, should time run short. summary.txt, results.json and logs.tgz go to $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
MODELS=${RF_BENCH_MODELS:-"llama-8b:Q4_K_M llama-8b:Q4_0 llama-8b:Q8_0 llama-1b:Q4_0 qwen2-7b:Q4_K_M qwen3-8b:Q4_K_M
                           gemma3-4b:Q4_K_M"}  # SHAPE:TYPE ..., in the order measured
DEPTH_MODELS=${RF_BENCH_DEPTH_MODELS:-llama-8b:Q4_K_M}  # these also get tg at each depth
DEPTHS=${RF_BENCH_DEPTHS:-4096,16384}
WORK=${RF_BENCH_WORK:-/tmp/rf-bench}  # shared with serving-bench.sh: one llama.cpp build
. scripts/bench-common.sh

start_llama_build llama-bench
install_rocmforge
gpu_tests 200  # with RF_BENCH_GPU_TESTS=1
write_models $MODELS

at_depth() { [[ " ${DEPTH_MODELS//:/-} " == *" $1 "* ]]; }  # NAME (SHAPE-TYPE): one of RF_BENCH_DEPTH_MODELS

rocmforge_side() {
    for name in "${names[@]}"; do
        bench_rocmforge "$name" "" 150 -p "$PP" -n "$TG" -ctk f16
        at_depth "$name" && bench_rocmforge "$name" -depth 150 -p 0 -n "$TG" -d "$DEPTHS" -ctk f16
    done
}

llama_side() {
    for name in "${names[@]}"; do
        bench_llama "$name" "" 120 -p "$PP" -n "$TG"
        at_depth "$name" && bench_llama "$name" -depth 120 -p 0 -n "$TG" -d "$DEPTHS"
    done
}

measure_both "${RF_BENCH_LLAMA_RESERVE:-200}"
print_table "${names[@]}"
