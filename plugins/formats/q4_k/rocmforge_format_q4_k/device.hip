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

// Dot of chunk c (elements 64c .. 64c+63: sub-blocks 2c and 2c+1, the low and high nibbles of the same 32 bytes
// of qs) with the block's 8-bit activations xq (16-byte aligned) scaled per 32 by xd: the decode product's unit
// (kernels/quant.hip). 144-byte blocks keep the quants 16-byte aligned.
// Read and unpacked once per chunk (rf_chunk_load), then dotted with each row of a batch (rf_chunk_dot).
#define RF_CHUNK 64
struct rf_chunk_w {
    int lo[8], hi[8];        // sub-block 2c and 2c+1, four quants a word
    float a0, b0, a1, b1;    // d * scale and dmin * min of the two sub-blocks
};
__device__ __forceinline__ rf_chunk_w rf_chunk_load(const uint8_t* __restrict__ b, int c) {
    rf_chunk_w w;
    const uint4 qa = *(const uint4*)(b + 16 + 32 * c), qb = *(const uint4*)(b + 32 + 32 * c);
    const uint32_t q[8] = {qa.x, qa.y, qa.z, qa.w, qb.x, qb.y, qb.z, qb.w};
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        w.lo[i] = (int)(q[i] & 0x0F0F0F0Fu);
        w.hi[i] = (int)((q[i] >> 4) & 0x0F0F0F0Fu);
    }
    int sc0, m0, sc1, m1;
    rf_k4_scale_min(b + 4, 2 * c, &sc0, &m0);
    rf_k4_scale_min(b + 4, 2 * c + 1, &sc1, &m1);
    const uint32_t dm = rf_u32_a4(b);  // d, then dmin
    const float d = rf_half_to_float((uint16_t)(dm & 0xffff)), dmin = rf_half_to_float((uint16_t)(dm >> 16));
    w.a0 = d * (float)sc0;
    w.b0 = dmin * (float)m0;
    w.a1 = d * (float)sc1;
    w.b1 = dmin * (float)m1;
    return w;
}
__device__ __forceinline__ float rf_chunk_dot(const rf_chunk_w& w, int c, const int8_t* __restrict__ xq,
                                              const float* __restrict__ xd) {
    xq += 64 * c;
    xd += 2 * c;
    const int4 x0 = *(const int4*)xq, x1 = *(const int4*)(xq + 16), x2 = *(const int4*)(xq + 32),
               x3 = *(const int4*)(xq + 48);
    const int xl[8] = {x0.x, x0.y, x0.z, x0.w, x1.x, x1.y, x1.z, x1.w};
    const int xh[8] = {x2.x, x2.y, x2.z, x2.w, x3.x, x3.y, x3.z, x3.w};
    int sl = 0, sh = 0, xsl = 0, xsh = 0;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        sl = rf_dp4a(w.lo[i], xl[i], sl);
        sh = rf_dp4a(w.hi[i], xh[i], sh);
        xsl = rf_dp4a(0x01010101, xl[i], xsl);
        xsh = rf_dp4a(0x01010101, xh[i], xsh);
    }
    return xd[0] * (w.a0 * (float)sl - w.b0 * (float)xsl) + xd[1] * (w.a1 * (float)sh - w.b1 * (float)xsh);
}

// Tile-product unit (kernels/quant.hip, rf_mmq): RF_MMA_UNIT elements of a row in slices of 16; rf_mma_load gives
// lane t of a quad the quants at positions RF_MMA_XOFF(i, t) .. +3 of every slice i as signed bytes (q), rf_mma_combine
// turns the exact integer dot of each slice with the activations (isum; xs: the sums of the activations, for
// formats that define RF_MMA_XS) into the unit's contribution, xd being the activations' scales per 32.
// A unit is a chunk of 64 (sub-blocks 2c and 2c + 1: the low and high nibbles of the same 32 bytes). Lane t reads
// bytes 8t .. 8t+7 of the 32 at once: slices 0 and 1 are their low nibbles, 2 and 3 their high nibbles.
#define RF_MMA_UNIT 64
#define RF_MMA_XS 1
#define RF_MMA_XOFF(i, t) (32 * ((i) >> 1) + 8 * (t) + 4 * ((i) & 1))
struct rf_mma_w {
    int q[4];
    float a0, b0, a1, b1;  // d * scale and dmin * min of the two sub-blocks
};
__device__ __forceinline__ rf_mma_w rf_mma_load(const uint8_t* __restrict__ row, int u, int t) {
    const int c = u & 3;
    const uint8_t* b = row + (long long)(u >> 2) * RF_TS;
    const uint2 q = rf_u64_a8(b + 16 + 32 * c + 8 * t);
    const uint32_t w0 = q.x, w1 = q.y;
    rf_mma_w w;
    w.q[0] = (int)(w0 & 0x0F0F0F0Fu);
    w.q[1] = (int)(w1 & 0x0F0F0F0Fu);
    w.q[2] = (int)((w0 >> 4) & 0x0F0F0F0Fu);
    w.q[3] = (int)((w1 >> 4) & 0x0F0F0F0Fu);
    int sc0, m0, sc1, m1;
    rf_k4_scale_min(b + 4, 2 * c, &sc0, &m0);
    rf_k4_scale_min(b + 4, 2 * c + 1, &sc1, &m1);
    const uint32_t dm = rf_u32_a4(b);  // d, then dmin
    const float d = rf_half_to_float((uint16_t)(dm & 0xffff)), dmin = rf_half_to_float((uint16_t)(dm >> 16));
    w.a0 = d * (float)sc0;
    w.b0 = dmin * (float)m0;
    w.a1 = d * (float)sc1;
    w.b1 = dmin * (float)m1;
    return w;
}
__device__ __forceinline__ float rf_mma_combine(const rf_mma_w& w, const int* isum, const int* xs, const float* xd) {
    return xd[0] * (w.a0 * (float)(isum[0] + isum[1]) - w.b0 * (float)(xs[0] + xs[1])) +
           xd[1] * (w.a1 * (float)(isum[2] + isum[3]) - w.b1 * (float)(xs[2] + xs[3]));
}
