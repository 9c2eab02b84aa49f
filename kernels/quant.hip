// Kernels over quantized weights, generic in the format: compiled once per format after that format's device
// code, which supplies RF_QK (elements per block), RF_TS (bytes per block) and rf_dequant8(block, g, v), the
// values of elements 8g .. 8g+7 of one block. A row of k elements is k / RF_QK blocks; kernels require
// k % 8 == 0 (k % 32 for the tiled product), which supports() checks on the host.

// Rows of w (all rows, or rows ids[i]) as float32 [n_rows, k], or as f16 when OUT_F16 (input of the BLAS path).
template <bool OUT_F16>
__device__ __forceinline__ void rf_rows_impl(const uint8_t* __restrict__ w, const int32_t* __restrict__ ids,
                                             void* __restrict__ out, int n_rows, int k, long long row_bytes) {
    const int per_row = k / 8;
    const long long gid = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (gid >= (long long)n_rows * per_row) return;
    const int r = (int)(gid / per_row), gr = (int)(gid % per_row);
    const long long src = ids ? (long long)ids[r] : (long long)r;
    float v[8];
    rf_dequant8(w + src * row_bytes + (long long)(gr / (RF_QK / 8)) * RF_TS, gr % (RF_QK / 8), v);
    if (OUT_F16) {
        uint4 h;
        h.x = rf_float_to_half(v[0]) | ((uint32_t)rf_float_to_half(v[1]) << 16);
        h.y = rf_float_to_half(v[2]) | ((uint32_t)rf_float_to_half(v[3]) << 16);
        h.z = rf_float_to_half(v[4]) | ((uint32_t)rf_float_to_half(v[5]) << 16);
        h.w = rf_float_to_half(v[6]) | ((uint32_t)rf_float_to_half(v[7]) << 16);
        ((uint4*)out)[gid] = h;
    } else {
        float4* o = (float4*)out + 2 * gid;
        o[0] = make_float4(v[0], v[1], v[2], v[3]);
        o[1] = make_float4(v[4], v[5], v[6], v[7]);
    }
}

extern "C" __global__ void rf_rows_f32(const uint8_t* __restrict__ w, const int32_t* __restrict__ ids,
                                       float* __restrict__ out, int n_rows, int k, long long row_bytes) {
    rf_grid_begin();
    rf_rows_impl<false>(w, ids, out, n_rows, k, row_bytes);
}

extern "C" __global__ void rf_rows_f16(const uint8_t* __restrict__ w, const int32_t* __restrict__ ids,
                                       uint16_t* __restrict__ out, int n_rows, int k, long long row_bytes) {
    rf_grid_begin();
    rf_rows_impl<true>(w, ids, out, n_rows, k, row_bytes);
}

// Products of a few rows of x (decode: one per sequence of the batch, m <= 64) with w: out[j, row] = x[j] . w[row].
// A block of RF_MV_WAVES waves takes RF_MV_WAVES / split rows of w; the `split` waves of a row share its chunks
// lane by lane, so that neighbouring lanes read neighbouring bytes. x's rows go in passes of RF_MV_ROWS, each pass
// keeping one accumulator per row, so the weight row is read from memory once and from the cache by later passes.
// Batch invariance: row j of x gets the same arithmetic in the same order whatever m is and wherever j sits in the
// batch (one kernel for every m; the same unrolled code for every accumulator; split depends on n and k alone), so
// a sequence decoded in a batch gets bit for bit the logits it gets alone.
#define RF_MV_WAVES 4
#define RF_MV_UNROLL 4
#define RF_MV_ROWS 8

__device__ __forceinline__ void rf_matvec_group(const float* __restrict__ x, const uint8_t* __restrict__ wr, int gi,
                                                int k, int mr, float* acc) {
    float v[8];
    rf_dequant8(wr + (gi / (RF_QK / 8)) * RF_TS, gi % (RF_QK / 8), v);
#pragma unroll
    for (int j = 0; j < RF_MV_ROWS; ++j) {
        if (j < mr) {
            const float4* xp = (const float4*)(x + (long long)j * k + 8 * gi);
            const float4 a = xp[0], b = xp[1];
            acc[j] += v[0] * a.x + v[1] * a.y + v[2] * a.z + v[3] * a.w + v[4] * b.x + v[5] * b.y + v[6] * b.z +
                      v[7] * b.w;
        }
    }
}

// Sums each pass's accumulators over the wave and over the `split` waves of a row; lane 0 of the row's first
// wave gets the totals of rows [0, mr) in acc. part: RF_MV_WAVES x RF_MV_ROWS floats of shared memory.
__device__ __forceinline__ void rf_matvec_reduce(float* acc, int mr, int split, float (*part)[RF_MV_ROWS]) {
    const int wave = threadIdx.x / RF_WAVE, lane = threadIdx.x % RF_WAVE;
#pragma unroll
    for (int j = 0; j < RF_MV_ROWS; ++j)
        if (j < mr) acc[j] = rf_wave_sum(acc[j]);
    if (split == 1) return;
    __syncthreads();  // the previous pass may still read part
    if (lane == 0) {
#pragma unroll
        for (int j = 0; j < RF_MV_ROWS; ++j) part[wave][j] = acc[j];
    }
    __syncthreads();
    if (wave % split == 0 && lane == 0) {
#pragma unroll
        for (int j = 0; j < RF_MV_ROWS; ++j) {
            float t = acc[j];
            for (int p = 1; p < split; ++p) t += part[wave + p][j];
            acc[j] = t;
        }
    }
}

// Float activations: every format's device code (rf_dequant8).
extern "C" __global__ void __launch_bounds__(RF_MV_WAVES * RF_WAVE)
    rf_matvec(const float* __restrict__ x, const uint8_t* __restrict__ w, float* __restrict__ out, int m, int n, int k,
              long long row_bytes, int split) {
    rf_grid_begin();
    __shared__ float part[RF_MV_WAVES][RF_MV_ROWS];
    const int wave = threadIdx.x / RF_WAVE, lane = threadIdx.x % RF_WAVE;
    const int row = blockIdx.x * (RF_MV_WAVES / split) + wave / split, piece = wave % split;
    const uint8_t* wr = w + (long long)row * row_bytes;
    const int groups = k / 8, step = RF_WAVE * split;
    for (int j0 = 0; j0 < m; j0 += RF_MV_ROWS) {
        const int mr = min(RF_MV_ROWS, m - j0);
        const float* xj = x + (long long)j0 * k;
        float acc[RF_MV_ROWS];
#pragma unroll
        for (int j = 0; j < RF_MV_ROWS; ++j) acc[j] = 0.0f;
        if (row < n) {
            int gi = piece * RF_WAVE + lane;
            // Unrolled so that the loads of RF_MV_UNROLL groups are issued before their arithmetic.
            for (; gi + (RF_MV_UNROLL - 1) * step < groups; gi += RF_MV_UNROLL * step) {
#pragma unroll
                for (int u = 0; u < RF_MV_UNROLL; ++u) rf_matvec_group(xj, wr, gi + u * step, k, mr, acc);
            }
            for (; gi < groups; gi += step) rf_matvec_group(xj, wr, gi, k, mr, acc);
        }
        rf_matvec_reduce(acc, mr, split, part);
        if (piece == 0 && lane == 0 && row < n) {
#pragma unroll
            for (int j = 0; j < RF_MV_ROWS; ++j)
                if (j < mr) out[(long long)(j0 + j) * n + row] = acc[j];
        }
    }
}

// The two entry points of a decode product: one weight, or up to three products of the same x in one launch (q, k and
// v; gate and up): blocks [0, b1) take w0, [b1, b2) w1, [b2, ...) w2, each with its own split (so each gets the
// arithmetic it gets when launched alone). Small products apart leave most of the GPU idle and each pays a launch in
// the chain. The last argument is the rows function: (xq, xd, w, out, m, n, k, row_bytes, split, block, residual,
// total).
#define RF_PRODUCT_KERNELS(NAME, THREADS, ...)                                                                   \
    extern "C" __global__ void __launch_bounds__(THREADS)                                                         \
        NAME(const int8_t* __restrict__ xq, const float* __restrict__ xd, const uint8_t* __restrict__ w,        \
             float* __restrict__ out, int m, int n, int k, long long row_bytes, int split,                      \
             const float* __restrict__ residual, float* __restrict__ total) {                                    \
        rf_grid_begin();                                                                                          \
        __VA_ARGS__(xq, xd, w, out, m, n, k, row_bytes, split, blockIdx.x, residual, total);                     \
    }                                                                                                             \
    extern "C" __global__ void __launch_bounds__(THREADS)                                                         \
        NAME##_multi(const int8_t* __restrict__ xq, const float* __restrict__ xd, int m, int k, long long row_bytes, \
                     const uint8_t* __restrict__ w0, float* __restrict__ out0, int n0, int s0,                  \
                     const uint8_t* __restrict__ w1, float* __restrict__ out1, int n1, int s1, int b1,          \
                     const uint8_t* __restrict__ w2, float* __restrict__ out2, int n2, int s2, int b2) {        \
        rf_grid_begin();                                                                                          \
        const int b = blockIdx.x;                                                                                 \
        if (b >= b2) {                                                                                            \
            __VA_ARGS__(xq, xd, w2, out2, m, n2, k, row_bytes, s2, b - b2, nullptr, nullptr);                    \
        } else if (b >= b1) {                                                                                     \
            __VA_ARGS__(xq, xd, w1, out1, m, n1, k, row_bytes, s1, b - b1, nullptr, nullptr);                    \
        } else {                                                                                                  \
            __VA_ARGS__(xq, xd, w0, out0, m, n0, k, row_bytes, s0, b, nullptr, nullptr);                         \
        }                                                                                                         \
    }

#if defined(RF_HAS_DOT8_Q8)
// Decode products for formats with an integer dot, x already quantized to 8 bits per 32 elements (rf_quantize_q8
// or a neighbour's q8 output: xq bytes, xd scales, rows end to end): each group of 8 weights costs two dp4a instead
// of eight conversions and multiplies. `block` numbers this block's rows of w. With `total`, also
// total[j, row] = out[j, row] + residual[j, row]: the residual add that follows attn_output and ffn_down.
// MR: rows of x per pass, 1 for a single sequence (rf_matvec_q8), RF_MV_ROWS for a batch (rf_matvec_q8_batch);
// a row's accumulator takes the same additions in the same order in both.
template <int MR>
__device__ __forceinline__ void rf_chunk_row(const uint8_t* __restrict__ wr, int ci, const int8_t* __restrict__ xqj,
                                             const float* __restrict__ xdj, int k, int mr, float* acc) {
#if defined(RF_CHUNK)
    // The format's own unit (RF_CHUNK elements, a whole block or a pair of sub-blocks): one wide read of its quants
    // and one scale decode per chunk (rf_chunk_load), then a dot with each row of x (rf_chunk_dot).
    const int blk = ci / (RF_QK / RF_CHUNK), c = ci % (RF_QK / RF_CHUNK);
    const rf_chunk_w cw = rf_chunk_load(wr + (long long)blk * RF_TS, c);
#pragma unroll
    for (int j = 0; j < MR; ++j)
        if (j < mr)
            acc[j] += rf_chunk_dot(cw, c, xqj + (long long)j * k + blk * RF_QK,
                                   xdj + (long long)j * (k / 32) + blk * (RF_QK / 32));
#else
    const uint8_t* b = wr + (ci / (RF_QK / 8)) * RF_TS;
#pragma unroll
    for (int j = 0; j < MR; ++j) {
        if (j < mr) {
            const int2 q = *(const int2*)(xqj + (long long)j * k + 8 * ci);
            acc[j] += xdj[(long long)j * (k / 32) + (ci >> 2)] * rf_dot8_q8(b, ci % (RF_QK / 8), q.x, q.y);
        }
    }
#endif
}

template <int MR>
__device__ __forceinline__ void rf_matvec_q8_rows(const int8_t* __restrict__ xq, const float* __restrict__ xd,
                                                  const uint8_t* __restrict__ w, float* __restrict__ out, int m, int n,
                                                  int k, long long row_bytes, int split, int block,
                                                  const float* __restrict__ residual, float* __restrict__ total) {
    __shared__ float part[RF_MV_WAVES][RF_MV_ROWS];
    const int wave = threadIdx.x / RF_WAVE, lane = threadIdx.x % RF_WAVE, piece = wave % split;
    const int row = block * (RF_MV_WAVES / split) + wave / split;
    const uint8_t* wr = w + (long long)row * row_bytes;
#if defined(RF_CHUNK)
    const int units = k / RF_CHUNK;  // a lane's units: chunks, or groups of 8
#else
    const int units = k / 8;
#endif
    const int step = RF_WAVE * split;
    for (int j0 = 0; j0 < m; j0 += MR) {
        const int mr = min(MR, m - j0);
        const int8_t* xqj = xq + (long long)j0 * k;
        const float* xdj = xd + (long long)j0 * (k / 32);
        float acc[RF_MV_ROWS];
#pragma unroll
        for (int j = 0; j < RF_MV_ROWS; ++j) acc[j] = 0.0f;
        if (row < n) {
            if constexpr (MR == 1) {  // loads of four units in flight
#pragma unroll 4
                for (int u = piece * RF_WAVE + lane; u < units; u += step)
                    rf_chunk_row<MR>(wr, u, xqj, xdj, k, mr, acc);
            } else {
#pragma unroll 2
                for (int u = piece * RF_WAVE + lane; u < units; u += step)
                    rf_chunk_row<MR>(wr, u, xqj, xdj, k, mr, acc);
            }
        }
        rf_matvec_reduce(acc, mr, split, part);
        if (piece == 0 && lane == 0 && row < n) {
#pragma unroll
            for (int j = 0; j < MR; ++j) {
                if (j < mr) {
                    const long long o = (long long)(j0 + j) * n + row;
                    out[o] = acc[j];
                    if (total) total[o] = acc[j] + residual[o];
                }
            }
        }
    }
}

RF_PRODUCT_KERNELS(rf_matvec_q8, RF_MV_WAVES * RF_WAVE, rf_matvec_q8_rows<1>)
RF_PRODUCT_KERNELS(rf_matvec_q8_batch, RF_MV_WAVES * RF_WAVE, rf_matvec_q8_rows<RF_MV_ROWS>)
#endif

#if defined(RF_HAS_MMA_S8) && defined(RF_MMA_UNIT)
// Decode products on integer tile instructions (rf_mma_s8), for the m <= 64 rows of x quantized to 8 bits: a group
// of S mma groups (32 lanes each) takes 16 * RT rows of w, mma group p of it the units p, p + S, ... of those
// rows; each unit's slices are multiplied with NT tiles of 8 rows of x (at most 8 NT rows), and the per-unit
// contributions (rf_mma_combine of exact integer sums) added in unit order; the S partial sums then go through a
// fixed tree. Batch invariance: S depends on n and k alone, integer sums are exact and a row of x meets the same
// float operations in the same order whatever m, RT and NT are, so one kernel serves every batch size including 1.
#define RF_MMQ_GROUPS 8  // mma groups per block
#define RF_MMA_SLICES (RF_MMA_UNIT / 16)
#if !defined(RF_MMA_XOFF)
#define RF_MMA_XOFF(i, t) (16 * (i) + 4 * (t))  // the unit positions of slice i held by lane t of a quad
#endif

template <int RT, int NT>
__device__ __forceinline__ void rf_mmq_rows(const int8_t* __restrict__ xq, const float* __restrict__ xd,
                                            const uint8_t* __restrict__ w, float* __restrict__ out, int m, int n,
                                            int k, long long row_bytes, int split, int block,
                                            const float* __restrict__ residual, float* __restrict__ total) {
    __shared__ float part[RF_MMQ_GROUPS / 2][RT * NT * 4][32];
    const int group = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int p = group % split, row0 = (block * (RF_MMQ_GROUPS / split) + group / split) * 16 * RT;
    const int units = k / RF_MMA_UNIT, xb = k / 32;
    float acc[RT][NT][4];
#pragma unroll
    for (int r = 0; r < RT; ++r)
#pragma unroll
        for (int c = 0; c < NT; ++c)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[r][c][e] = 0.0f;
    const uint8_t* wr[RT][2];
#pragma unroll
    for (int r = 0; r < RT; ++r)
#pragma unroll
        for (int h = 0; h < 2; ++h) wr[r][h] = w + (long long)min(row0 + 16 * r + g + 8 * h, n - 1) * row_bytes;
#pragma unroll 4
    for (int u = p; u < units; u += split) {
        rf_mma_w wt[RT][2];
#pragma unroll
        for (int r = 0; r < RT; ++r)
#pragma unroll
            for (int h = 0; h < 2; ++h) wt[r][h] = rf_mma_load(wr[r][h], u, t);
#pragma unroll
        for (int c = 0; c < NT; ++c) {
            const int col = 8 * c + g;  // this lane's row of x in B
            int b[RF_MMA_SLICES];
#pragma unroll
            for (int i = 0; i < RF_MMA_SLICES; ++i)
                b[i] = col < m ? *(const int*)(xq + (long long)col * k + u * RF_MMA_UNIT + RF_MMA_XOFF(i, t)) : 0;
            int xs[RF_MMA_SLICES][4];
#pragma unroll
            for (int i = 0; i < RF_MMA_SLICES; ++i) {
                xs[i][0] = xs[i][1] = xs[i][2] = xs[i][3] = 0;
#if defined(RF_MMA_XS)
                rf_mma_s8(0x01010101, 0x01010101, b[i], xs[i]);  // every row: the sums of x's columns
#endif
            }
            const float* xd0 = xd + (long long)min(8 * c + 2 * t, m - 1) * xb + u * (RF_MMA_UNIT / 32);
            const float* xd1 = xd + (long long)min(8 * c + 2 * t + 1, m - 1) * xb + u * (RF_MMA_UNIT / 32);
#pragma unroll
            for (int r = 0; r < RT; ++r) {
                int is[RF_MMA_SLICES][4];
#pragma unroll
                for (int i = 0; i < RF_MMA_SLICES; ++i) {
                    is[i][0] = is[i][1] = is[i][2] = is[i][3] = 0;
                    rf_mma_s8(wt[r][0].q[i], wt[r][1].q[i], b[i], is[i]);
                }
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    int ie[RF_MMA_SLICES], xe[RF_MMA_SLICES];
#pragma unroll
                    for (int i = 0; i < RF_MMA_SLICES; ++i) {
                        ie[i] = is[i][e];
                        xe[i] = xs[i][e & 1];
                    }
                    acc[r][c][e] = __fadd_rn(acc[r][c][e], rf_mma_combine(wt[r][e >> 1], ie, xe, (e & 1) ? xd1 : xd0));
                }
            }
        }
    }
    // The tree over the split: at step s, group p (p % 2s == s) hands its sums to group p - s through part.
    const int base = (group / split) * (split / 2);  // this row group's slots: one per sender of a step
    for (int s = 1; s < split; s *= 2) {
        __syncthreads();
        if (p % (2 * s) == s) {
#pragma unroll
            for (int r = 0; r < RT; ++r)
#pragma unroll
                for (int c = 0; c < NT; ++c)
#pragma unroll
                    for (int e = 0; e < 4; ++e) part[base + p / 2][(r * NT + c) * 4 + e][lane] = acc[r][c][e];
        }
        __syncthreads();
        if (p % (2 * s) == 0) {
#pragma unroll
            for (int r = 0; r < RT; ++r)
#pragma unroll
                for (int c = 0; c < NT; ++c)
#pragma unroll
                    for (int e = 0; e < 4; ++e) acc[r][c][e] += part[base + (p + s) / 2][(r * NT + c) * 4 + e][lane];
        }
    }
    if (p != 0) return;
#pragma unroll
    for (int r = 0; r < RT; ++r)
#pragma unroll
        for (int c = 0; c < NT; ++c)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int row = row0 + 16 * r + g + 8 * (e >> 1), col = 8 * c + 2 * t + (e & 1);
                if (row < n && col < m) {
                    const long long o = (long long)col * n + row;
                    out[o] = acc[r][c][e];
                    if (total) total[o] = acc[r][c][e] + residual[o];
                }
            }
}

// The same products for one row of x (m = 1, a single sequence), with rf_mmq's arithmetic bit for bit: partial p of
// the split partials of a row of w adds, in order, the contributions of group p's units (p, p + S, ...), each
// rf_mma_combine of the slices' integer sums (built with dp4a from the four quad lanes' words of rf_mma_load), and
// the partials meet in rf_mmq's tree. Only the additions have to keep that order: L lanes (L >= S, rf_mmv_lanes)
// take a row's units L at a time, lane q unit q of each run, and lane p < S adds the contributions of lanes
// p, p + S, ... by shuffles. Written against a lane walking all of its group's units alone (L = S): 81 us for an 8B
// ffn_down (Q6_K, 56 units a lane) under Nsight Compute, 0.6 TB/s; in the captured step tg128 at 8B did not move
// (docs/PERF.md), so that walk was not what bounds decode there. Neighbouring lanes read neighbouring units, so a
// row's bytes stream in whole sectors.
#define RF_MMV_RUNS 4  // runs of L units whose loads are issued before their additions

__device__ __forceinline__ int rf_mmv_lanes(int units, int split) {  // ops._mmv_lanes
    int lanes = split;
    while (lanes < 32 && units >= 2 * lanes) lanes *= 2;
    return lanes;
}

__device__ __forceinline__ float rf_mmv_unit(const int8_t* __restrict__ xq, const float* __restrict__ xd,
                                             const uint8_t* __restrict__ wr, int u) {
    const int8_t* x = xq + u * RF_MMA_UNIT;
    int is[RF_MMA_SLICES], xs[RF_MMA_SLICES];
#pragma unroll
    for (int i = 0; i < RF_MMA_SLICES; ++i) is[i] = xs[i] = 0;
    rf_mma_w w0;
#pragma unroll
    for (int t = 0; t < 4; ++t) {
        const rf_mma_w wt = rf_mma_load(wr, u, t);
        if (t == 0) w0 = wt;
#pragma unroll
        for (int i = 0; i < RF_MMA_SLICES; ++i) {
            const int xv = *(const int*)(x + RF_MMA_XOFF(i, t));
            is[i] = rf_dp4a(wt.q[i], xv, is[i]);
#if defined(RF_MMA_XS)
            xs[i] = rf_dp4a(0x01010101, xv, xs[i]);
#endif
        }
    }
    return rf_mma_combine(w0, is, xs, xd + u * (RF_MMA_UNIT / 32));
}

__device__ __forceinline__ void rf_mmv_rows(const int8_t* __restrict__ xq, const float* __restrict__ xd,
                                            const uint8_t* __restrict__ w, float* __restrict__ out, int m, int n,
                                            int k, long long row_bytes, int split, int block,
                                            const float* __restrict__ residual, float* __restrict__ total) {
    const int units = k / RF_MMA_UNIT, lanes = rf_mmv_lanes(units, split);
    const int lane = threadIdx.x % 32, q = lane % lanes, p = q % split, first = lane - q;
    const int row = (block * RF_MMQ_GROUPS + threadIdx.x / 32) * (32 / lanes) + lane / lanes;
    const uint8_t* wr = w + (long long)min(row, n - 1) * row_bytes;
    float acc = 0.0f;
    for (int u0 = 0; u0 < units; u0 += RF_MMV_RUNS * lanes) {
        float c[RF_MMV_RUNS];
#pragma unroll
        for (int r = 0; r < RF_MMV_RUNS; ++r) {
            const int u = u0 + r * lanes + q;
            c[r] = u < units ? rf_mmv_unit(xq, xd, wr, u) : 0.0f;
        }
#pragma unroll
        for (int r = 0; r < RF_MMV_RUNS; ++r) {
            for (int j = 0; j < lanes; j += split) {
                const float cj = __shfl(c[r], first + p + j, 32);
                if (q < split && u0 + r * lanes + p + j < units) acc = __fadd_rn(acc, cj);
            }
        }
    }
    for (int s = 1; s < split; s *= 2) {
        const float other = __shfl_xor(acc, s, 32);  // lane + s where p % 2s == 0
        if (p % (2 * s) == 0) acc += other;
    }
    if (q == 0 && row < n) {
        out[row] = acc;
        if (total) total[row] = acc + residual[row];
    }
}

RF_PRODUCT_KERNELS(rf_mmv, RF_MMQ_GROUPS * 32, rf_mmv_rows)

// One pair of entry points per (RT, NT).
#define RF_MMQ(RT, NT) RF_PRODUCT_KERNELS(rf_mmq_##RT##_##NT, RF_MMQ_GROUPS * 32, rf_mmq_rows<RT, NT>)
RF_MMQ(1, 1)
RF_MMQ(2, 2)
RF_MMQ(2, 4)
RF_MMQ(2, 8)
#endif

// out = x @ w.T for a prefill batch, x f32 [m, k]: 64x64 output tiles, the weight tile dequantized into shared
// memory 32 columns at a time (needs k % 32 == 0); each of 256 threads accumulates a 4x4 patch.
#define RF_MM_T 64
#define RF_MM_K 32
extern "C" __global__ void __launch_bounds__(256)
    rf_matmul_tiled(const float* __restrict__ x, const uint8_t* __restrict__ w, float* __restrict__ out, int m,
                    int n, int k, long long row_bytes) {
    rf_grid_begin();
    __shared__ float xs[RF_MM_K][RF_MM_T + 4];
    __shared__ float ws[RF_MM_K][RF_MM_T + 4];
    const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
    const int m0 = blockIdx.y * RF_MM_T, n0 = blockIdx.x * RF_MM_T;
    const int lr = tid / 4, lq = tid % 4;  // loader: one tile row, one 8-wide group
    float acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;
    for (int k0 = 0; k0 < k; k0 += RF_MM_K) {
        float v[8];
        if (m0 + lr < m) {
            const float4* xp = (const float4*)(x + (long long)(m0 + lr) * k + k0 + 8 * lq);
            const float4 a = xp[0], b = xp[1];
            v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w; v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
        } else {
#pragma unroll
            for (int i = 0; i < 8; ++i) v[i] = 0.0f;
        }
#pragma unroll
        for (int i = 0; i < 8; ++i) xs[8 * lq + i][lr] = v[i];
        if (n0 + lr < n) {
            const int gi = k0 / 8 + lq;
            rf_dequant8(w + (long long)(n0 + lr) * row_bytes + (long long)(gi / (RF_QK / 8)) * RF_TS,
                        gi % (RF_QK / 8), v);
        } else {
#pragma unroll
            for (int i = 0; i < 8; ++i) v[i] = 0.0f;
        }
#pragma unroll
        for (int i = 0; i < 8; ++i) ws[8 * lq + i][lr] = v[i];
        __syncthreads();
#pragma unroll 8
        for (int kk = 0; kk < RF_MM_K; ++kk) {
            const float4 a = *(const float4*)&xs[kk][4 * ty];
            const float4 b = *(const float4*)&ws[kk][4 * tx];
            const float av[4] = {a.x, a.y, a.z, a.w}, bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] += av[i] * bv[j];
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int r = m0 + 4 * ty + i;
        if (r >= m) continue;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int c = n0 + 4 * tx + j;
            if (c < n) out[(long long)r * n + c] = acc[i][j];
        }
    }
}
