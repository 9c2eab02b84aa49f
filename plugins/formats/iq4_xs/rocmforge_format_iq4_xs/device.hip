// IQ4_XS device code for rocmforge's HIP kernels (interface: docs/HIP.md, "Format device code").
// Super-block: 256 elements in 136 bytes: f16 d, 16 bits scales_h, 4 bytes scales_l, 128 bytes qs. Sub-block ib
// (32 elements) has the 6-bit scale (nibble ib % 2 of scales_l[ib / 2]) | (bits 2ib..2ib+1 of scales_h) << 4,
// stored plus 32, and 16 bytes of 4-bit indices into IQ4_NL's table (element l < 16 low nibble of byte l, l + 16
// high nibble). value = (d * (scale - 32)) * table[index].
#define RF_QK 256
#define RF_TS 136

__constant__ float rf_iq4xs_table[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

__device__ __forceinline__ void rf_dequant8(const uint8_t* __restrict__ b, int g, float* __restrict__ v) {
    const int ib = g >> 2;
    const int ls = ((b[4 + (ib >> 1)] >> (4 * (ib & 1))) & 15) | (((rf_u16(b + 2) >> (2 * ib)) & 3) << 4);
    const float d1 = rf_f16_at(b) * (float)(ls - 32);
    const uint8_t* q = b + 8 + 16 * ib + 8 * (g & 1);
    const int shift = ((g >> 1) & 1) * 4;
    const uint32_t lo = rf_u32_a2(q), hi = rf_u32_a2(q + 4);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        v[i] = d1 * rf_iq4xs_table[(lo >> (8 * i + shift)) & 15];
        v[i + 4] = d1 * rf_iq4xs_table[(hi >> (8 * i + shift)) & 15];
    }
}
