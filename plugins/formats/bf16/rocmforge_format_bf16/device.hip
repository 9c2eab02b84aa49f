// BF16 device code for rocmforge's HIP kernels (interface: docs/HIP.md, "Format device code").
// GGUF's BF16 has blocks of one element; the kernels read 8 at a time, so a kernel block is 8 values (16 bytes).
#define RF_QK 8
#define RF_TS 16

__device__ __forceinline__ void rf_dequant8(const uint8_t* __restrict__ b, int g, float* __restrict__ v) {
    const uint4 raw = *(const uint4*)b;
    const uint32_t w[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        v[2 * i] = __uint_as_float(w[i] << 16);
        v[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
    }
}
