// Q4_K device code for rocmforge's HIP kernels (interface: docs/HIP.md, "Format device code").
// Super-block: 256 elements in 144 bytes: f16 d, f16 dmin, 12 bytes of packed 6-bit scales and mins for eight
// sub-blocks of 32, then 128 bytes qs. Bytes qs[32c .. 32c+31] hold sub-block 2c in their low nibbles and
// sub-block 2c+1 in their high nibbles. value = (d * scale) * q - (dmin * min).
#define RF_QK 256
#define RF_TS 144

__device__ __forceinline__ void rf_k4_scale_min(const uint8_t* __restrict__ s, int j, int* sc, int* m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

__device__ __forceinline__ void rf_dequant8(const uint8_t* __restrict__ b, int g, float* __restrict__ v) {
    const int sub = g >> 2, shift = (sub & 1) * 4;
    int sc, m;
    rf_k4_scale_min(b + 4, sub, &sc, &m);
    const float d1 = rf_f16_at(b) * (float)sc, m1 = rf_f16_at(b + 2) * (float)m;
    const uint2 q = rf_u64_a8(b + 16 + 32 * (sub >> 1) + 8 * (g & 3));  // 144-byte blocks: 8-byte aligned
    const uint32_t lo = q.x, hi = q.y;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        v[i] = d1 * (float)((lo >> (8 * i + shift)) & 15) - m1;
        v[i + 4] = d1 * (float)((hi >> (8 * i + shift)) & 15) - m1;
    }
}

// Dot of elements 8g .. 8g+7 with eight signed bytes (xq0: elements 0-3, xq1: 4-7), for products whose
// activations are quantized to 8 bits: (d * scale) * sum(q * x) - (dmin * min) * sum(x).
#define RF_HAS_DOT8_Q8 1
__device__ __forceinline__ float rf_dot8_q8(const uint8_t* __restrict__ b, int g, int xq0, int xq1) {
    const int sub = g >> 2, shift = (sub & 1) * 4;
    int sc, m;
    rf_k4_scale_min(b + 4, sub, &sc, &m);
    const uint2 q = rf_u64_a8(b + 16 + 32 * (sub >> 1) + 8 * (g & 3));
    const int lo = (int)((q.x >> shift) & 0x0F0F0F0Fu), hi = (int)((q.y >> shift) & 0x0F0F0F0Fu);
    const int sq = rf_dp4a(hi, xq1, rf_dp4a(lo, xq0, 0));
    const int sx = rf_dp4a(0x01010101, xq1, rf_dp4a(0x01010101, xq0, 0));
    const uint32_t dm = rf_u32_a4(b);  // d, then dmin
    return rf_half_to_float((uint16_t)(dm & 0xffff)) * (float)sc * (float)sq -
           rf_half_to_float((uint16_t)(dm >> 16)) * (float)m * (float)sx;
}
