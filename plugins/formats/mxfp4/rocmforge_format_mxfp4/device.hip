// MXFP4 device code for rocmforge's HIP kernels (interface: docs/HIP.md, "Format device code").
// Block: 32 elements in 17 bytes: an E8M0 exponent e, then 16 bytes of FP4 (E2M1) codes (element j < 16 low
// nibble of qs[j], j + 16 high nibble); value = (2^(e - 127) / 2) * e2m1_doubled[code], as ggml computes it.
// Blocks of 17 bytes have no alignment: bytes are read one at a time.
#define RF_QK 32
#define RF_TS 17

__constant__ float rf_mxfp4_table[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

__device__ __forceinline__ void rf_dequant8(const uint8_t* __restrict__ b, int g, float* __restrict__ v) {
    const uint32_t e = b[0];
    const float d = __uint_as_float(e < 2 ? 0x00200000u << e : (e - 1) << 23);
    const uint8_t* q = b + 1 + 8 * (g & 1);
    const int shift = (g >> 1) * 4;
#pragma unroll
    for (int i = 0; i < 8; ++i) v[i] = d * rf_mxfp4_table[(q[i] >> shift) & 15];
}
