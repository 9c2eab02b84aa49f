#!/usr/bin/env bash
# ggml's x86 CMake options for the features this CPU's /proc/cpuinfo lists, with AMX off, for a CPU-only
# llama.cpp build (scripts/llamacpp-anchor.sh, scripts/serving-bench.sh). Spelled out instead of GGML_NATIVE=ON:
# -march=native also turns on AMX where the CPU has it, and ggml's AMX matmul crashed (SIGSEGV in
# ggml_backend_amx_mul_mat) on the 2-core VM.
f=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) " out="-DGGML_NATIVE=OFF"
for pair in avx:AVX avx2:AVX2 fma:FMA f16c:F16C bmi2:BMI2 avx512f:AVX512 avx512vbmi:AVX512_VBMI \
            avx512_vnni:AVX512_VNNI avx512_bf16:AVX512_BF16 avx_vnni:AVX_VNNI; do
    [[ $f == *" ${pair%%:*} "* ]] && out+=" -DGGML_${pair##*:}=ON"
done
echo "$out -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
