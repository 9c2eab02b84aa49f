// Q5_0 device code for rocmforge's HIP kernels (interface: docs/HIP.md, "Format device code").
// Block: 32 elements in 22 bytes: f16 scale d, 32 high bits qh (bit j is element j's fifth bit), 16 bytes qs
// (element j < 16 low nibble of qs[j], j + 16 high nibble); value = d * (q - 16).
#define RF_QK 32
#define RF_TS 22

__device__ __forceinline__ void rf_dequant8(const uint8_t* __restrict__ b, int g, float* __restrict__ v) {
    const float d = rf_f16_at(b);
    const uint32_t qh = rf_u32_a2(b + 2) >> (8 * g);
    const uint8_t* q = b + 6 + 8 * (g & 1);
    const int shift = (g >> 1) * 4;
    const uint32_t lo = rf_u32_a2(q), hi = rf_u32_a2(q + 4);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int a = (int)(((lo >> (8 * i + shift)) & 15) | (((qh >> i) & 1) << 4));
        const int c = (int)(((hi >> (8 * i + shift)) & 15) | (((qh >> (i + 4)) & 1) << 4));
        v[i] = d * (float)(a - 16);
        v[i + 4] = d * (float)(c - 16);
    }
}
