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

// Bits 0..3 of h moved to bit 4 of bytes 0..3 (the fifth bit of four 5-bit values).
__device__ __forceinline__ uint32_t rf_fifth_bits(uint32_t h) {
    return ((h & 1u) << 4) | ((h & 2u) << 11) | ((h & 4u) << 18) | ((h & 8u) << 25);
}

// Dot of elements 8g .. 8g+7 with eight signed bytes (xq0: elements 0-3, xq1: 4-7), for products whose
// activations are quantized to 8 bits: d * sum((q - 16) * x).
#define RF_HAS_DOT8_Q8 1
__device__ __forceinline__ float rf_dot8_q8(const uint8_t* __restrict__ b, int g, int xq0, int xq1) {
    const uint32_t qh = rf_u32_a2(b + 2) >> (8 * g);
    const uint8_t* q = b + 6 + 8 * (g & 1);
    const int shift = (g >> 1) * 4;
    const int lo = (int)(((rf_u32_a2(q) >> shift) & 0x0F0F0F0Fu) | rf_fifth_bits(qh));
    const int hi = (int)(((rf_u32_a2(q + 4) >> shift) & 0x0F0F0F0Fu) | rf_fifth_bits(qh >> 4));
    const int sq = rf_dp4a(hi, xq1, rf_dp4a(lo, xq0, 0));
    const int sx = rf_dp4a(0x01010101, xq1, rf_dp4a(0x01010101, xq0, 0));
    return rf_f16_at(b) * (float)(sq - 16 * sx);
}
