// Q8_0 device code for rocmforge's HIP kernels (interface: docs/HIP.md, "Format device code").
// Block: 32 elements in 34 bytes: f16 scale d, 32 signed bytes qs; value = d * q.
#define RF_QK 32
#define RF_TS 34

__device__ __forceinline__ void rf_dequant8(const uint8_t* __restrict__ b, int g, float* __restrict__ v) {
    const float d = rf_f16_at(b);
    const uint8_t* q = b + 2 + 8 * g;
    const uint32_t lo = rf_u32_a2(q), hi = rf_u32_a2(q + 4);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        v[i] = d * (float)(int8_t)(lo >> (8 * i));
        v[i + 4] = d * (float)(int8_t)(hi >> (8 * i));
    }
}

// Dot of elements 8g .. 8g+7 with eight signed bytes (xq0: elements 0-3, xq1: 4-7), for products whose
// activations are quantized to 8 bits.
#define RF_HAS_DOT8_Q8 1
__device__ __forceinline__ float rf_dot8_q8(const uint8_t* __restrict__ b, int g, int xq0, int xq1) {
    const uint8_t* q = b + 2 + 8 * g;
    return rf_f16_at(b) * (float)rf_dp4a((int)rf_u32_a2(q + 4), xq1, rf_dp4a((int)rf_u32_a2(q), xq0, 0));
}

// Tile-product unit (kernels/quant.hip, rf_mmq): RF_MMA_UNIT elements of a row in slices of 16; rf_mma_load gives
// lane t of a quad the quants at positions 16i + 4t .. +3 of every slice i as signed bytes (q; RF_MMA_XOFF may say
// otherwise), rf_mma_combine
// turns the exact integer dot of each slice with the activations (isum; xs: the sums of the activations, for
// formats that define RF_MMA_XS) into the unit's contribution, xd being the activations' scales per 32.
#define RF_MMA_UNIT 32
struct rf_mma_w {
    int q[2];
    float d;
};
__device__ __forceinline__ rf_mma_w rf_mma_load(const uint8_t* __restrict__ row, int u, int t) {
    const uint8_t* b = row + (long long)u * RF_TS;
    rf_mma_w w;
    w.q[0] = (int)rf_u32_a2(b + 2 + 4 * t);
    w.q[1] = (int)rf_u32_a2(b + 18 + 4 * t);
    w.d = rf_f16_at(b);
    return w;
}
__device__ __forceinline__ float rf_mma_combine(const rf_mma_w& w, const int* isum, const int* xs, const float* xd) {
    return w.d * (xd[0] * (float)(isum[0] + isum[1]));
}
