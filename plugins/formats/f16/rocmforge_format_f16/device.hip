// F16 device code for rocmforge's HIP kernels (interface: docs/HIP.md, "Format device code").
// GGUF's F16 has blocks of one element; the kernels read 8 at a time, so a kernel block is 8 halves (16 bytes).
#define RF_QK 8
#define RF_TS 16

__device__ __forceinline__ void rf_dequant8(const uint8_t* __restrict__ b, int g, float* __restrict__ v) {
    const uint4 raw = *(const uint4*)b;  // rows of F16 weights are 16-byte aligned in the weight arena
    const uint32_t w[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        v[2 * i] = rf_half_to_float((uint16_t)(w[i] & 0xffff));
        v[2 * i + 1] = rf_half_to_float((uint16_t)(w[i] >> 16));
    }
}
