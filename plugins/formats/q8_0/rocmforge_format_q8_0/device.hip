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
        v[i] = d * (rf_u2f(((lo >> (8 * i)) & 255) ^ 128) - 128.0f);
        v[i + 4] = d * (rf_u2f(((hi >> (8 * i)) & 255) ^ 128) - 128.0f);
    }
}
