// IQ4_NL device code for rocmforge's HIP kernels (interface: docs/HIP.md, "Format device code").
// Block: 32 elements in 18 bytes: f16 d, 16 bytes qs of 4-bit indices into a fixed non-linear table (element
// j < 16 low nibble of qs[j], j + 16 high nibble); value = d * table[index].
#define RF_QK 32
#define RF_TS 18

__constant__ float rf_iq4nl_table[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

__device__ __forceinline__ void rf_dequant8(const uint8_t* __restrict__ b, int g, float* __restrict__ v) {
    const float d = rf_f16_at(b);
    const uint8_t* q = b + 2 + 8 * (g & 1);
    const int shift = (g >> 1) * 4;
    const uint32_t lo = rf_u32_a2(q), hi = rf_u32_a2(q + 4);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        v[i] = d * rf_iq4nl_table[(lo >> (8 * i + shift)) & 15];
        v[i + 4] = d * rf_iq4nl_table[(hi >> (8 * i + shift)) & 15];
    }
}
