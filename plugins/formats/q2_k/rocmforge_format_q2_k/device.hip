// Q2_K device code for rocmforge's HIP kernels (interface: docs/HIP.md, "Format device code").
// Super-block: 256 elements in 84 bytes: 16 scale bytes (low nibble scale, high nibble min, one per 16 elements),
// 64 bytes qs of 2-bit values, f16 d, f16 dmin. Element 128h + 32j + 16s + l (j < 4, s < 2, l < 16) is bits 2j..2j+1
// of qs[32h + 16s + l] with scale byte 8h + 2j + s. value = (d * scale) * q - (dmin * min).
#define RF_QK 256
#define RF_TS 84

__device__ __forceinline__ void rf_dequant8(const uint8_t* __restrict__ b, int g, float* __restrict__ v) {
    const int h = g >> 4, j = (g >> 2) & 3, s = (g >> 1) & 1, l0 = 8 * (g & 1);
    const int sc = b[8 * h + 2 * j + s];
    const float d1 = rf_f16_at(b + 80) * (float)(sc & 15), m1 = rf_f16_at(b + 82) * (float)(sc >> 4);
    const uint8_t* q = b + 16 + 32 * h + 16 * s + l0;
    const uint32_t lo = rf_u32_a2(q), hi = rf_u32_a2(q + 4);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        v[i] = d1 * (float)((lo >> (8 * i + 2 * j)) & 3) - m1;
        v[i + 4] = d1 * (float)((hi >> (8 * i + 2 * j)) & 3) - m1;
    }
}
