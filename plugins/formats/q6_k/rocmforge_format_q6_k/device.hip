// Q6_K device code for rocmforge's HIP kernels (interface: docs/HIP.md, "Format device code").
// Super-block: 256 elements in 210 bytes: ql[128] (low 4 bits), qh[64] (high 2 bits), 16 signed 8-bit scales (one
// per 16 elements), f16 d at byte 208. Element 128h + 32j + l (j < 4, l < 32): low bits from ql[64h + l + 32(j&1)]
// (high nibble when j >= 2), high bits (qh[32h + l] >> 2j) & 3, scale scales[8h + l/16 + 2j].
// value = (d * scale) * (q - 32).
#define RF_QK 256
#define RF_TS 210

__device__ __forceinline__ void rf_dequant8(const uint8_t* __restrict__ b, int g, float* __restrict__ v) {
    const int h = g >> 4, j = (g >> 2) & 3, l0 = 8 * (g & 3);
    const int shift = (j >> 1) * 4, hshift = 2 * j;
    const float d1 = rf_f16_at(b + 208) * (float)(int8_t)b[192 + 8 * h + (l0 >> 4) + 2 * j];
    const uint8_t* ql = b + 64 * h + l0 + 32 * (j & 1);
    const uint8_t* qh = b + 128 + 32 * h + l0;
    const uint32_t lo = rf_u32_a2(ql), hi = rf_u32_a2(ql + 4);
    const uint32_t hlo = rf_u32_a2(qh), hhi = rf_u32_a2(qh + 4);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int a = (int)(((lo >> (8 * i + shift)) & 15) | (((hlo >> (8 * i + hshift)) & 3) << 4));
        const int c = (int)(((hi >> (8 * i + shift)) & 15) | (((hhi >> (8 * i + hshift)) & 3) << 4));
        v[i] = d1 * (float)(a - 32);
        v[i + 4] = d1 * (float)(c - 32);
    }
}

// Dot of elements 8g .. 8g+7 with eight signed bytes (xq0: elements 0-3, xq1: 4-7), for products whose
// activations are quantized to 8 bits: (d * scale) * sum((q - 32) * x).
#define RF_HAS_DOT8_Q8 1
__device__ __forceinline__ float rf_dot8_q8(const uint8_t* __restrict__ b, int g, int xq0, int xq1) {
    const int h = g >> 4, j = (g >> 2) & 3, l0 = 8 * (g & 3);
    const int shift = (j >> 1) * 4, hshift = 2 * j;
    const float d1 = rf_f16_at(b + 208) * (float)(int8_t)b[192 + 8 * h + (l0 >> 4) + 2 * j];
    const uint8_t* ql = b + 64 * h + l0 + 32 * (j & 1);
    const uint8_t* qh = b + 128 + 32 * h + l0;
    const int lo = (int)(((rf_u32_a2(ql) >> shift) & 0x0F0F0F0Fu) | (((rf_u32_a2(qh) >> hshift) & 0x03030303u) << 4));
    const int hi = (int)(((rf_u32_a2(ql + 4) >> shift) & 0x0F0F0F0Fu) |
                         (((rf_u32_a2(qh + 4) >> hshift) & 0x03030303u) << 4));
    const int sq = rf_dp4a(hi, xq1, rf_dp4a(lo, xq0, 0));
    const int sx = rf_dp4a(0x01010101, xq1, rf_dp4a(0x01010101, xq0, 0));
    return d1 * (float)(sq - 32 * sx);
}

// Dot of chunk c (h = c / 2, j in {c % 2, c % 2 + 2}: elements 128h + 32j .. +31, whose low bits are the low and
// high nibbles of the same 32 bytes of ql and whose high bits share 32 bytes of qh) with the block's 8-bit
// activations xq (16-byte aligned) scaled per 32 by xd: the decode product's unit (kernels/quant.hip).
// Read and unpacked once per chunk (rf_chunk_load), then dotted with each row of a batch (rf_chunk_dot).
#define RF_CHUNK 64
struct rf_chunk_w {
    int qa[2][4], qb[2][4];  // per half (l < 16, l >= 16): the quants of j and of j + 2, four a word
    float sa[2], sb[2];      // their scales
    float d;
};
__device__ __forceinline__ rf_chunk_w rf_chunk_load(const uint8_t* __restrict__ b, int c) {
    rf_chunk_w w;
    const int h = c >> 1, j = c & 1;
    const uint8_t* ql = b + 64 * h + 32 * j;
    const uint8_t* qh = b + 128 + 32 * h;
#pragma unroll
    for (int half = 0; half < 2; ++half) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const uint32_t lo = rf_u32_a2(ql + 16 * half + 4 * i), hi = rf_u32_a2(qh + 16 * half + 4 * i);
            w.qa[half][i] = (int)((lo & 0x0F0F0F0Fu) | (((hi >> (2 * j)) & 0x03030303u) << 4));
            w.qb[half][i] = (int)(((lo >> 4) & 0x0F0F0F0Fu) | (((hi >> (2 * j + 4)) & 0x03030303u) << 4));
        }
        const int8_t* sc = (const int8_t*)b + 192 + 8 * h + half;
        w.sa[half] = (float)sc[2 * j];
        w.sb[half] = (float)sc[2 * j + 4];
    }
    w.d = rf_f16_at(b + 208);
    return w;
}
__device__ __forceinline__ float rf_chunk_dot(const rf_chunk_w& w, int c, const int8_t* __restrict__ xq,
                                              const float* __restrict__ xd) {
    const int h = c >> 1, j = c & 1;
    const int8_t* xa = xq + 128 * h + 32 * j;  // elements of j; those of j + 2 follow 64 later
    float sum = 0.0f;
#pragma unroll
    for (int half = 0; half < 2; ++half) {  // l < 16, l >= 16: one scale each
        int sa = 0, sb = 0, xsa = 0, xsb = 0;
        const int4 x0 = *(const int4*)(xa + 16 * half), x1 = *(const int4*)(xa + 64 + 16 * half);
        const int xl[4] = {x0.x, x0.y, x0.z, x0.w}, xh[4] = {x1.x, x1.y, x1.z, x1.w};
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            sa = rf_dp4a(w.qa[half][i], xl[i], sa);
            sb = rf_dp4a(w.qb[half][i], xh[i], sb);
            xsa = rf_dp4a(0x01010101, xl[i], xsa);
            xsb = rf_dp4a(0x01010101, xh[i], xsb);
        }
        sum += xd[4 * h + j] * w.sa[half] * (float)(sa - 32 * xsa) +
               xd[4 * h + j + 2] * w.sb[half] * (float)(sb - 32 * xsb);
    }
    return w.d * sum;
}

// Tile-product unit (kernels/quant.hip, rf_mmq): RF_MMA_UNIT elements of a row in slices of 16; rf_mma_load gives
// lane t of a quad the quants at positions 16i + 4t .. +3 of every slice i as signed bytes (q; RF_MMA_XOFF may say
// otherwise), rf_mma_combine
// turns the exact integer dot of each slice with the activations (isum; xs: the sums of the activations, for
// formats that define RF_MMA_XS) into the unit's contribution, xd being the activations' scales per 32.
// A unit is 32 elements (h, j) with one scale per slice.
#define RF_MMA_UNIT 32
struct rf_mma_w {
    int q[2];
    int s[2];
    float d;
};
__device__ __forceinline__ rf_mma_w rf_mma_load(const uint8_t* __restrict__ row, int u, int t) {
    const uint8_t* b = row + (long long)(u >> 3) * RF_TS;
    const int h = (u >> 2) & 1, j = u & 3;
    rf_mma_w w;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        const uint32_t lo = (rf_u32_a2(b + 64 * h + 32 * (j & 1) + 16 * i + 4 * t) >> (4 * (j >> 1))) & 0x0F0F0F0Fu;
        const uint32_t hi = (rf_u32_a2(b + 128 + 32 * h + 16 * i + 4 * t) >> (2 * j)) & 0x03030303u;
        w.q[i] = (int)(((lo | (hi << 4)) | 0x80808080u) - 0x20202020u) ^ (int)0x80808080u;  // q - 32 as int8s
        w.s[i] = (int)(int8_t)b[192 + 8 * h + i + 2 * j];
    }
    w.d = rf_f16_at(b + 208);
    return w;
}
__device__ __forceinline__ float rf_mma_combine(const rf_mma_w& w, const int* isum, const int* xs, const float* xd) {
    return w.d * (xd[0] * (float)(w.s[0] * isum[0] + w.s[1] * isum[1]));
}
