// Q3_K device code for rocmforge's HIP kernels (interface: docs/HIP.md, "Format device code").
// Super-block: 256 elements in 110 bytes: hmask[32], qs[64] (2 low bits), 12 bytes of 6-bit scales, f16 d.
// Element 128h + 32j + 16s + l (j < 4, s < 2, l < 16): low bits 2j..2j+1 of qs[32h + 16s + l], minus 4 unless bit
// 4h + j of hmask[16s + l] is set; scale number 8h + 2j + s, whose low nibble is in byte (number % 8) (high
// nibble from 8 on) and its top two bits at 2 * (number / 4) of byte 8 + number % 4, stored plus 32.
// value = (d * (scale - 32)) * q.
#define RF_QK 256
#define RF_TS 110

__device__ __forceinline__ void rf_dequant8(const uint8_t* __restrict__ b, int g, float* __restrict__ v) {
    const int h = g >> 4, j = (g >> 2) & 3, s = (g >> 1) & 1, l0 = 8 * (g & 1);
    const int n = 8 * h + 2 * j + s;
    const int sc = ((b[96 + (n & 7)] >> (4 * (n >> 3))) & 15) | (((b[104 + (n & 3)] >> (2 * (n >> 2))) & 3) << 4);
    const float d1 = rf_f16_at(b + 108) * (float)(sc - 32);
    const uint8_t* q = b + 32 + 32 * h + 16 * s + l0;
    const uint32_t lo = rf_u32_a2(q), hi = rf_u32_a2(q + 4);
    const uint32_t mlo = rf_u32_a2(b + 16 * s + l0) >> (4 * h + j), mhi = rf_u32_a2(b + 16 * s + l0 + 4) >> (4 * h + j);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        v[i] = d1 * (float)((int)((lo >> (8 * i + 2 * j)) & 3) - (((mlo >> (8 * i)) & 1) ? 0 : 4));
        v[i + 4] = d1 * (float)((int)((hi >> (8 * i + 2 * j)) & 3) - (((mhi >> (8 * i)) & 1) ? 0 : 4));
    }
}
