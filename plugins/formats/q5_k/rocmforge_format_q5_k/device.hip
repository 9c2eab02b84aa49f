// Q5_K device code for rocmforge's HIP kernels (interface: docs/HIP.md, "Format device code").
// Super-block: 256 elements in 176 bytes: f16 d, f16 dmin, 12 bytes of 6-bit scales and mins (as Q4_K), 32 bytes
// qh (bit s of qh[l] is the fifth bit of element l of sub-block s), 128 bytes qs (low/high nibbles as Q4_K).
// value = (d * scale) * q - (dmin * min).
#define RF_QK 256
#define RF_TS 176

__device__ __forceinline__ void rf_k5_scale_min(const uint8_t* __restrict__ s, int j, int* sc, int* m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

__device__ __forceinline__ void rf_dequant8(const uint8_t* __restrict__ b, int g, float* __restrict__ v) {
    const int sub = g >> 2, shift = (sub & 1) * 4, l0 = 8 * (g & 3);
    int sc, m;
    rf_k5_scale_min(b + 4, sub, &sc, &m);
    const float d1 = rf_f16_at(b) * (float)sc, m1 = rf_f16_at(b + 2) * (float)m;
    const uint8_t* q = b + 48 + 32 * (sub >> 1) + l0;
    const uint32_t lo = rf_u32_a2(q), hi = rf_u32_a2(q + 4);
    const uint32_t hlo = rf_u32_a2(b + 16 + l0) >> sub, hhi = rf_u32_a2(b + 20 + l0) >> sub;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        v[i] = d1 * (float)(((lo >> (8 * i + shift)) & 15) | (((hlo >> (8 * i)) & 1) << 4)) - m1;
        v[i + 4] = d1 * (float)(((hi >> (8 * i + shift)) & 15) | (((hhi >> (8 * i)) & 1) << 4)) - m1;
    }
}

// Dot of elements 8g .. 8g+7 with eight signed bytes (xq0: elements 0-3, xq1: 4-7), for products whose
// activations are quantized to 8 bits: (d * scale) * sum(q * x) - (dmin * min) * sum(x).
#define RF_HAS_DOT8_Q8 1
__device__ __forceinline__ float rf_dot8_q8(const uint8_t* __restrict__ b, int g, int xq0, int xq1) {
    const int sub = g >> 2, shift = (sub & 1) * 4, l0 = 8 * (g & 3);
    int sc, m;
    rf_k5_scale_min(b + 4, sub, &sc, &m);
    const uint8_t* q = b + 48 + 32 * (sub >> 1) + l0;
    const int lo = (int)(((rf_u32_a2(q) >> shift) & 0x0F0F0F0Fu) |
                         (((rf_u32_a2(b + 16 + l0) >> sub) & 0x01010101u) << 4));
    const int hi = (int)(((rf_u32_a2(q + 4) >> shift) & 0x0F0F0F0Fu) |
                         (((rf_u32_a2(b + 20 + l0) >> sub) & 0x01010101u) << 4));
    const int sq = rf_dp4a(hi, xq1, rf_dp4a(lo, xq0, 0));
    const int sx = rf_dp4a(0x01010101, xq1, rf_dp4a(0x01010101, xq0, 0));
    return rf_f16_at(b) * (float)sc * (float)sq - rf_f16_at(b + 2) * (float)m * (float)sx;
}
