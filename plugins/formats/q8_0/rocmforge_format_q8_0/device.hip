// Q8_0 device code for rocmforge's HIP kernels (interface: docs/HIP.md, "Format device code").
// Block: 32 elements in 34 bytes: f16 scale d, 32 signed bytes qs; value = d * q.
#define RF_QK 32
#define RF_TS 34

__device__ __forceinline__ void rf_dequant8(const uint8_t* __restrict__ b, int g, float* __restrict__ v) {
    const float d = rf_f16_at(b);
    const uint8_t* q = b + 2 + 8 * g;
    const uint32_t lo = rf_u32_a2(q), hi = rf_u32_a2(q + 4);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        v[i] = d * (float)(int8_t)(lo >> (8 * i));
        v[i + 4] = d * (float)(int8_t)(hi >> (8 * i));
    }
}

// Dot of elements 8g .. 8g+7 with eight signed bytes (xq0: elements 0-3, xq1: 4-7), for products whose
// activations are quantized to 8 bits.
#define RF_HAS_DOT8_Q8 1
__device__ __forceinline__ float rf_dot8_q8(const uint8_t* __restrict__ b, int g, int xq0, int xq1) {
    const uint8_t* q = b + 2 + 8 * g;
    return rf_f16_at(b) * (float)rf_dp4a((int)rf_u32_a2(q + 4), xq1, rf_dp4a((int)rf_u32_a2(q), xq0, 0));
}
