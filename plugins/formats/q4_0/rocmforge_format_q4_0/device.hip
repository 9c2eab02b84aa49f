// Q4_0 device code for rocmforge's HIP kernels (interface: docs/HIP.md, "Format device code").
// Block: 32 elements in 18 bytes: f16 scale d, then 16 bytes qs; element j < 16 is the low nibble of qs[j],
// element j + 16 its high nibble; value = d * (q - 8).
#define RF_QK 32
#define RF_TS 18

__device__ __forceinline__ void rf_dequant8(const uint8_t* __restrict__ b, int g, float* __restrict__ v) {
    const float d = rf_f16_at(b);
    const uint8_t* q = b + 2 + 8 * (g & 1);
    const int shift = (g >> 1) * 4;
    const uint32_t lo = rf_u32_a2(q), hi = rf_u32_a2(q + 4);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        v[i] = d * (float)((int)((lo >> (8 * i + shift)) & 15) - 8);
        v[i + 4] = d * (float)((int)((hi >> (8 * i + shift)) & 15) - 8);
    }
}

// Dot of elements 8g .. 8g+7 with eight signed bytes (xq0: elements 0-3, xq1: 4-7), for products whose
// activations are quantized to 8 bits: sum (q - 8) * x scaled by d, on integer dot instructions.
#define RF_HAS_DOT8_Q8 1
__device__ __forceinline__ float rf_dot8_q8(const uint8_t* __restrict__ b, int g, int xq0, int xq1) {
    const uint8_t* q = b + 2 + 8 * (g & 1);
    const int shift = (g >> 1) * 4;
    const int lo = (int)((rf_u32_a2(q) >> shift) & 0x0F0F0F0Fu), hi = (int)((rf_u32_a2(q + 4) >> shift) & 0x0F0F0F0Fu);
    const int sq = rf_dp4a(hi, xq1, rf_dp4a(lo, xq0, 0));
    const int sx = rf_dp4a(0x01010101, xq1, rf_dp4a(0x01010101, xq0, 0));
    return rf_f16_at(b) * (float)(sq - 8 * sx);
}

// The decode product's unit (kernels/quant.hip): the whole block (RF_CHUNK elements, c is 0), read and unpacked
// once (rf_chunk_load), then dotted with the 32 signed 8-bit activations xq (16-byte aligned) of each row of a
// batch, scaled by xd[0] (rf_chunk_dot).
#define RF_CHUNK 32
struct rf_chunk_w {
    int lo[4], hi[4];  // elements 0-15 and 16-31, four a word
    float d;
};
__device__ __forceinline__ rf_chunk_w rf_chunk_load(const uint8_t* __restrict__ b, int c) {
    rf_chunk_w w;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const uint32_t q = rf_u32_a2(b + 2 + 4 * i);
        w.lo[i] = (int)(q & 0x0F0F0F0Fu);
        w.hi[i] = (int)((q >> 4) & 0x0F0F0F0Fu);
    }
    w.d = rf_f16_at(b);
    return w;
}
__device__ __forceinline__ float rf_chunk_dot(const rf_chunk_w& w, int c, const int8_t* __restrict__ xq,
                                              const float* __restrict__ xd) {
    const int4 xa = *(const int4*)xq, xb = *(const int4*)(xq + 16);  // elements 0-15, 16-31
    const int xl[4] = {xa.x, xa.y, xa.z, xa.w}, xh[4] = {xb.x, xb.y, xb.z, xb.w};
    int sq = 0, sx = 0;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        sq = rf_dp4a(w.lo[i], xl[i], sq);
        sq = rf_dp4a(w.hi[i], xh[i], sq);
        sx = rf_dp4a(0x01010101, xh[i], rf_dp4a(0x01010101, xl[i], sx));
    }
    return xd[0] * w.d * (float)(sq - 8 * sx);
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
__device__ __forceinline__ int rf_s8_minus(uint32_t q, uint32_t o) {  // bytewise q - o (q, o < 128), as int8s
    return (int)(((q | 0x80808080u) - o) ^ 0x80808080u);
}
__device__ __forceinline__ rf_mma_w rf_mma_load(const uint8_t* __restrict__ row, int u, int t) {
    const uint8_t* b = row + (long long)u * RF_TS;
    const uint32_t q = rf_u32_a2(b + 2 + 4 * t);
    rf_mma_w w;
    w.q[0] = rf_s8_minus(q & 0x0F0F0F0Fu, 0x08080808u);
    w.q[1] = rf_s8_minus((q >> 4) & 0x0F0F0F0Fu, 0x08080808u);
    w.d = rf_f16_at(b);
    return w;
}
__device__ __forceinline__ float rf_mma_combine(const rf_mma_w& w, const int* isum, const int* xs, const float* xd) {
    return w.d * (xd[0] * (float)(isum[0] + isum[1]));
}
