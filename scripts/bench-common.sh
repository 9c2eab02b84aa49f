# What scripts/serving-bench.sh and scripts/single-stream-bench.sh share (sourced, from the repository root, after
# the script sets WORK, the folder of the llama.cpp source, its build and the model files): settings, the phase
# log and deadline, stopping the processes they start, the llama.cpp build in the background, installing rocmforge
# and writing the synthetic models. Every phase runs under a timeout cut to a deadline (RF_BENCH_DEADLINE s after
# the start), so a call ends in time with the table of what finished.
ROOT=$(pwd)
T0=$(date +%s)

CUDA=${RF_BENCH_CUDA:-1}
PP=${RF_BENCH_PP:-512}
TG=${RF_BENCH_TG:-128}
REPS=${RF_BENCH_REPS:-5}
DEADLINE=${RF_BENCH_DEADLINE:-570}
WAIT_BUILD=${RF_BENCH_WAIT_BUILD:-0}           # 1: measure rocmforge only after the build (no CPU contention)
OUT=${OUT:-$WORK/out}
if [ "$CUDA" = 1 ]; then BACKEND=${RF_BENCH_BACKEND:-hip}; else BACKEND=${RF_BENCH_BACKEND:-cpu}; fi
THREADS=${RF_BENCH_THREADS:-}                  # CPU threads of both engines (default: each engine's own)
JOBS=${RF_BENCH_JOBS:-$(( $(nproc) > 4 ? $(nproc) - 2 : $(nproc) ))}
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

start_llama_build() {  # the llama.cpp tools from .carry, built in the background, niced; sets BUILD, NGL, BUILD_PID
    local f flags
    for f in .carry/llamacpp-src.tgz .carry/ggml-vocab-llama-bpe.gguf; do
        [ -f "$f" ] || { echo "missing $f: run scripts/stage-anchors.sh here and carry .carry"; exit 1; }
    done
    [ -d "$WORK/llama.cpp" ] || tar xzf .carry/llamacpp-src.tgz -C "$WORK"
    if [ "$CUDA" = 1 ]; then
        command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
        BUILD=$WORK/llama-build-cuda
        flags="-DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90"
        NGL="-ngl 99"
    else
        BUILD=$WORK/llama-build-cpu
        flags="-DGGML_CUDA=OFF $(scripts/ggml-cpu-flags.sh) -DGGML_OPENMP=ON"
        NGL=""
    fi
    # LLAMA_BUILD_APP=OFF: the trimmed source has no app/ folder, which the default (ON) would add
    setsid nice -n 19 bash -c "cmake -S '$WORK/llama.cpp' -B '$BUILD' -G Ninja -DCMAKE_BUILD_TYPE=Release $flags \
        -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
        -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_APP=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DBUILD_SHARED_LIBS=OFF \
        && cmake --build '$BUILD' -j$JOBS --target $1" >"$RAW/llama-build.log" 2>&1 &
    BUILD_PID=$!
    log "llama.cpp build started ($( [ "$CUDA" = 1 ] && echo CUDA || echo CPU), -j$JOBS: $1)"
}

wait_build() {  # 0 once built; stops the build when the deadline leaves 60 s or less
    while kill -0 "$BUILD_PID" 2>/dev/null && [ "$(left)" -gt 60 ]; do sleep 2; done
    if kill -0 "$BUILD_PID" 2>/dev/null; then
        log "llama.cpp build not done by the deadline: stopped"; stop "$BUILD_PID"; BUILD_PID=""; return 1
    fi
    wait "$BUILD_PID"; local rc=$?; BUILD_PID=""
    [ "$rc" = 0 ] || { log "llama.cpp build failed (rc $rc)"; tail -30 "$RAW/llama-build.log"; return 1; }
    log "llama.cpp built"
}

install_rocmforge() {  # where it is not installed: the carried wheels and editable packages, no network
    if ! "$PY" -c "import importlib.metadata as m, gguf, starlette, uvicorn; m.version('rocmforge')" 2>/dev/null; then
        . scripts/device-install.sh
        RF_SITE=$WORK/site rf_device_install "$RAW/install.log" "$PY" || exit 1
        log "rocmforge installed"
    fi
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | tee "$RAW/gpu.txt"
}

write_models() {  # SHAPE:TYPE...: each as $WORK/models/SHAPE-TYPE.gguf with the Llama-3 tokenizer; sets names
    local spec name
    names=()
    for spec in "$@"; do
        name=${spec/:/-}
        if timeout "$(budget 120)" "$PY" -m rocmforge_core.cli.bench --write-synthetic "$spec" \
                --vocab-from "$ROOT/.carry/ggml-vocab-llama-bpe.gguf" --out "$WORK/models/$name.gguf" \
                >/dev/null 2>"$RAW/write-$name.err"; then
            names+=("$name")
            log "wrote $name.gguf ($(du -m "$WORK/models/$name.gguf" | cut -f1) MB)"
        else
            log "writing $name.gguf failed or ran out of time: left out"; tail -3 "$RAW/write-$name.err"
            rm -f "$WORK/models/$name.gguf"
        fi
    done
}

bench_rocmforge() {  # NAME SUFFIX SECONDS ARGS...: `rocmforge bench --json ARGS`, to rf-bench-NAME$SUFFIX.json
    local name=$1 out=rf-bench-$1$2 seconds=$3
    shift 3
    timeout "$(budget "$seconds")" "$PY" -m rocmforge_core.cli.bench --model "$WORK/models/$name.gguf" -r "$REPS" \
        --backend "$BACKEND" $(thr --threads) --json "$@" >"$RAW/$out.json" 2>"$RAW/$out.err"
    log "rocmforge bench $name $* done (rc $?)"
}

bench_llama() {  # NAME SUFFIX SECONDS ARGS...: `llama-bench -o json ARGS` of a model to llama-bench-NAME$SUFFIX.json
    local name=$1 out=llama-bench-$1$2 seconds=$3
    shift 3
    timeout "$(budget "$seconds")" "$BUILD/bin/llama-bench" -m "$WORK/models/$name.gguf" -r "$REPS" $NGL $(thr -t) \
        -o json "$@" >"$RAW/$out.json" 2>"$RAW/$out.err"
    log "llama-bench $name $* done (rc $?)"
}

gpu_tests() {  # SECONDS: with RF_BENCH_GPU_TESTS=1, `pytest -m gpu` while llama.cpp builds, to pytest-gpu.log
    [ "${RF_BENCH_GPU_TESTS:-0}" = 1 ] || return 0
    timeout "$(budget "$1")" "$PY" -m pytest -m gpu -q -p no:cacheprovider -rfs \
        $(grep -rl "mark.gpu" tests --include="test_*.py") >"$RAW/pytest-gpu.log" 2>&1
    log "gpu tests (rc $?): $(grep -E 'passed|failed' "$RAW/pytest-gpu.log" | tail -1)"
    grep -E "^(FAILED|ERROR)" "$RAW/pytest-gpu.log" | head -10
}

measure_both() {  # RESERVE: the script's rocmforge_side (leaving RESERVE s of the deadline), then its llama_side
    # once llama.cpp is built; with WAIT_BUILD=1 the build first, so rocmforge does not share the CPU with it
    local built
    if [ "$WAIT_BUILD" = 1 ]; then
        wait_build && built=1 || built=0
        rocmforge_side
    else
        RESERVE=$1 rocmforge_side
        wait_build && built=1 || built=0
    fi
    [ "$built" = 1 ] && llama_side
    log "done"
}

print_table() {  # NAME...: the side-by-side table to $OUT/summary.txt (after the phases) and stdout
    "$PY" scripts/bench-table.py "$RAW" "$@" --json "$OUT/results.json" >"$RAW/table.md"
    cat "$RAW/phases.txt" "$RAW/table.md" >"$OUT/summary.txt"
    echo
    cat "$RAW/table.md"
}
