// Q5_1 device code for rocmforge's HIP kernels (interface: docs/HIP.md, "Format device code").
// Block: 32 elements in 24 bytes: f16 scale d, f16 minimum m, 32 high bits qh, 16 bytes qs (as Q5_0);
// value = d * q + m.
#define RF_QK 32
#define RF_TS 24

__device__ __forceinline__ void rf_dequant8(const uint8_t* __restrict__ b, int g, float* __restrict__ v) {
    const float d = rf_f16_at(b), m = rf_f16_at(b + 2);
    const uint32_t qh = rf_u32_a2(b + 4) >> (8 * g);
    const uint8_t* q = b + 8 + 8 * (g & 1);
    const int shift = (g >> 1) * 4;
    const uint32_t lo = rf_u32_a2(q), hi = rf_u32_a2(q + 4);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        v[i] = d * (float)(((lo >> (8 * i + shift)) & 15) | (((qh >> i) & 1) << 4)) + m;
        v[i + 4] = d * (float)(((hi >> (8 * i + shift)) & 15) | (((qh >> (i + 4)) & 1) << 4)) + m;
    }
}

// Bits 0..3 of h moved to bit 4 of bytes 0..3 (the fifth bit of four 5-bit values).
__device__ __forceinline__ uint32_t rf_fifth_bits(uint32_t h) {
    return ((h & 1u) << 4) | ((h & 2u) << 11) | ((h & 4u) << 18) | ((h & 8u) << 25);
}

// Dot of elements 8g .. 8g+7 with eight signed bytes (xq0: elements 0-3, xq1: 4-7), for products whose
// activations are quantized to 8 bits: d * sum(q * x) + m * sum(x).
#define RF_HAS_DOT8_Q8 1
__device__ __forceinline__ float rf_dot8_q8(const uint8_t* __restrict__ b, int g, int xq0, int xq1) {
    const uint32_t qh = rf_u32_a2(b + 4) >> (8 * g);
    const uint8_t* q = b + 8 + 8 * (g & 1);
    const int shift = (g >> 1) * 4;
    const int lo = (int)(((rf_u32_a2(q) >> shift) & 0x0F0F0F0Fu) | rf_fifth_bits(qh));
    const int hi = (int)(((rf_u32_a2(q + 4) >> shift) & 0x0F0F0F0Fu) | rf_fifth_bits(qh >> 4));
    const int sq = rf_dp4a(hi, xq1, rf_dp4a(lo, xq0, 0));
    const int sx = rf_dp4a(0x01010101, xq1, rf_dp4a(0x01010101, xq0, 0));
    return rf_f16_at(b) * (float)sq + rf_f16_at(b + 2) * (float)sx;
}
