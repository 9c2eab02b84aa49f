// Attention over a paged KV cache (rocmforge_core/ops/attention.py): cache write, then one wave per
// (token, kv head, chunk of its query heads) with an online softmax over the token's visible positions, RF_WAVE
// keys per step.
// Compile-time: RF_D (key head dim), RF_DV (value head dim), RF_KV_F16 (cache holds f16, else f32).
// Long contexts split the positions over gridDim.y; rf_attention_combine merges the partial softmaxes.

// Cache rows are read 16 bytes at a time (RF_D and RF_DV multiples of 8, checked on the host).
#if RF_KV_F16
typedef uint16_t kv_t;
#define RF_KV_PER16 8
__device__ __forceinline__ kv_t rf_kv_store(float f) { return rf_float_to_half(f); }
__device__ __forceinline__ float rf_kv_round(float f) { return rf_half_to_float(rf_float_to_half(f)); }
__device__ __forceinline__ void rf_kv_unpack(uint4 r, float* v) {
    const uint32_t w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        v[2 * i] = rf_half_to_float((uint16_t)(w[i] & 0xffff));
        v[2 * i + 1] = rf_half_to_float((uint16_t)(w[i] >> 16));
    }
}
#else
typedef float kv_t;
#define RF_KV_PER16 4
__device__ __forceinline__ kv_t rf_kv_store(float f) { return f; }
__device__ __forceinline__ float rf_kv_round(float f) { return f; }
__device__ __forceinline__ void rf_kv_unpack(uint4 r, float* v) {
    v[0] = __uint_as_float(r.x); v[1] = __uint_as_float(r.y); v[2] = __uint_as_float(r.z); v[3] = __uint_as_float(r.w);
}
#endif

#define RF_ATT_WAVES 4
// The value sum reads 8 elements (16 bytes of an f16 cache) per lane and load: RF_VLR lanes cover a value row
// (RF_VCL chunks of 8 each), so one load of the wave covers RF_VP rows; lanes past RF_VP * RF_VLR idle there.
#define RF_VCH (RF_DV / 8)
#define RF_VCL ((RF_VCH + RF_WAVE - 1) / RF_WAVE)
#define RF_VLR ((RF_VCH + RF_VCL - 1) / RF_VCL)
#define RF_VP (RF_WAVE / RF_VLR)

__device__ __forceinline__ long long rf_slot(const int32_t* __restrict__ table, int pos, int bs) {
    return (long long)table[pos / bs] * bs + pos % bs;
}

// Elements e .. e + 7 of a cache row (e % 8 == 0), or of the token's own row `own` (rows < 0: decode, see
// rf_attention) rounded as the cache would hold it.
__device__ __forceinline__ void rf_kv_load8(const kv_t* __restrict__ c, long long row, int width, int e,
                                            const float* __restrict__ own, float* v) {
    if (row < 0) {
#pragma unroll
        for (int i = 0; i < 8; ++i) v[i] = rf_kv_round(own[e + i]);
        return;
    }
    const uint4* p = (const uint4*)(c + row * width + e);
#pragma unroll
    for (int i = 0; i < 8 / RF_KV_PER16; ++i) rf_kv_unpack(p[i], v + i * RF_KV_PER16);
}

// k [m, hkv, RF_D], v [m, hkv, RF_DV] into their slots; one thread per (token, kv head, dim).
extern "C" __global__ void rf_kv_write(const float* __restrict__ k, const float* __restrict__ v, kv_t* __restrict__ kc,
                                       kv_t* __restrict__ vc, const int32_t* __restrict__ tables, int mb,
                                       const int32_t* __restrict__ seq_ids, const int32_t* __restrict__ positions,
                                       int m, int hkv, int bs) {
    rf_grid_begin();
    const int dmax = RF_D > RF_DV ? RF_D : RF_DV;
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)m * hkv * dmax) return;
    const int d = (int)(i % dmax), h = (int)((i / dmax) % hkv), t = (int)(i / ((long long)dmax * hkv));
    const long long slot = rf_slot(tables + (long long)seq_ids[t] * mb, positions[t], bs) * hkv + h;
    if (d < RF_D) kc[slot * RF_D + d] = rf_kv_store(k[((long long)t * hkv + h) * RF_D + d]);
    if (d < RF_DV) vc[slot * RF_DV + d] = rf_kv_store(v[((long long)t * hkv + h) * RF_DV + d]);
}

// One wave per (token, kv head, chunk of up to G of the query heads sharing that kv head): each key and value row
// is read once for all of them, not once per query head (a GQA model's 4-8 heads per kv head). Each lane scores
// one position against the G queries (shared memory); the value sum then takes RF_VP positions per load, each
// lane 8 dims of one, and the RF_VP lanes of a dim are summed in order at the end. The softmax denominator is
// summed lane by lane and over the wave at the end.
// part (n_splits > 1): [split][m * hq][RF_DV + 2] holding (acc..., running max, running sum).
// k_new, v_new (one token, m == 1): the token's own k and v rows. Then this kernel also writes them into the cache
// (block 0 of the grid) instead of rf_kv_write, and no wave reads that slot: the token's own position takes its
// key and value from k_new and v_new, one launch fewer per layer in decode.
template <int G>
__device__ __forceinline__ void rf_attention_impl(
    const float* __restrict__ q, kv_t* __restrict__ kc, kv_t* __restrict__ vc, const int32_t* __restrict__ tables,
    int mb, const int32_t* __restrict__ seq_ids, const int32_t* __restrict__ positions, float* __restrict__ out,
    float* __restrict__ part, int m, int hq, int hkv, int bs, float scale, int window, float softcap, int split_len,
    const float* __restrict__ k_new, const float* __restrict__ v_new) {
    if (k_new && blockIdx.x == 0 && blockIdx.y == 0) {
        const long long slot = rf_slot(tables + (long long)seq_ids[0] * mb, positions[0], bs) * hkv;
        for (int i = threadIdx.x; i < hkv * RF_D; i += blockDim.x) kc[slot * RF_D + i] = rf_kv_store(k_new[i]);
        for (int i = threadIdx.x; i < hkv * RF_DV; i += blockDim.x) vc[slot * RF_DV + i] = rf_kv_store(v_new[i]);
    }
    __shared__ float qs[RF_ATT_WAVES][G][RF_D];
    const int wave = threadIdx.x / RF_WAVE, lane = threadIdx.x % RF_WAVE;
    const int group = hq / hkv, chunks = (group + G - 1) / G;
    const int item = blockIdx.x * RF_ATT_WAVES + wave;
    const bool valid = item < m * hkv * chunks;
    const int t = valid ? item / (hkv * chunks) : 0, kvh = valid ? item / chunks % hkv : 0;
    const int h0 = kvh * group + item % chunks * G, ng = valid ? min(G, group - item % chunks * G) : 0;
    const int pos = positions[t];
    // A split that starts past the positions of all this block's tokens holds nothing, and the merge does not
    // read it: a short sequence in a long cache launches many such blocks.
    if (gridDim.y > 1 && !__syncthreads_or(valid && (int)blockIdx.y * split_len <= pos)) return;
#pragma unroll
    for (int g = 0; g < G; ++g)
        for (int d = lane; d < RF_D; d += RF_WAVE)
            qs[wave][g][d] = g < ng ? q[((long long)t * hq + h0 + g) * RF_D + d] : 0.0f;
    __syncthreads();

    int lo = window > 0 ? max(0, pos - window + 1) : 0, hi = pos;
    if (gridDim.y > 1) {
        lo = max(lo, (int)blockIdx.y * split_len);
        hi = min(hi, (int)(blockIdx.y + 1) * split_len - 1);
    }
    if (!valid) hi = lo - 1;
    const int32_t* table = tables + (long long)seq_ids[t] * mb;
    const float* k_own = k_new + kvh * RF_D;
    const float* v_own = v_new + kvh * RF_DV;
    const int vp = lane / RF_VLR, vc0 = lane % RF_VLR * RF_VCL;  // this lane's row of a load, first chunk

    float run_max[G], run_sum[G], acc[G][RF_VCL][8];
#pragma unroll
    for (int g = 0; g < G; ++g) {
        run_max[g] = -RF_INF;
        run_sum[g] = 0.0f;
#pragma unroll
        for (int c = 0; c < RF_VCL; ++c)
#pragma unroll
            for (int e = 0; e < 8; ++e) acc[g][c][e] = 0.0f;
    }

    for (int base = lo; base <= hi; base += RF_WAVE) {
        const int p = base + lane;
        // Each lane scores one position; its cache row is then broadcast for the value sum, so the block table
        // is read once per position.
        const bool own = k_new && p == pos;
        const long long row = own ? -1 : p <= hi ? rf_slot(table, p, bs) * hkv + kvh : 0;
        float s[G];
#pragma unroll
        for (int g = 0; g < G; ++g) s[g] = 0.0f;
        if (p <= hi) {
#pragma unroll 4
            for (int c = 0; c < RF_D; c += 8) {
                float kv[8];
                rf_kv_load8(kc, row, RF_D, c, k_own, kv);
#pragma unroll
                for (int g = 0; g < G; ++g) {
                    const float4 a = *(const float4*)&qs[wave][g][c], b = *(const float4*)&qs[wave][g][c + 4];
                    s[g] += a.x * kv[0] + a.y * kv[1] + a.z * kv[2] + a.w * kv[3] + b.x * kv[4] + b.y * kv[5] +
                            b.z * kv[6] + b.w * kv[7];
                }
            }
        }
        float e[G];
#pragma unroll
        for (int g = 0; g < G; ++g) {
            float sg = s[g] * scale;
            if (softcap > 0.0f) sg = softcap * tanhf(sg / softcap);
            sg = p <= hi ? sg : -RF_INF;
            const float new_max = fmaxf(run_max[g], rf_wave_max(sg));
            e[g] = p <= hi ? expf(sg - new_max) : 0.0f;
            const float alpha = expf(run_max[g] - new_max);
            run_sum[g] = run_sum[g] * alpha + e[g];
            run_max[g] = new_max;
#pragma unroll
            for (int c = 0; c < RF_VCL; ++c)
#pragma unroll
                for (int i = 0; i < 8; ++i) acc[g][c][i] *= alpha;
        }
        const int n = min(RF_WAVE, hi - base + 1);
#pragma unroll
        // Fully unrolled (a fixed trip count; rows past n are skipped): all the value loads of a step in flight.
        for (int j0 = 0; j0 < RF_WAVE; j0 += RF_VP) {
            const int j = min(j0 + vp, RF_WAVE - 1);
            const long long r = __shfl(row, j, RF_WAVE);
            float ej[G];
#pragma unroll
            for (int g = 0; g < G; ++g) ej[g] = __shfl(e[g], j, RF_WAVE);
            if (vp < RF_VP && j0 + vp < n) {
#pragma unroll
                for (int c = 0; c < RF_VCL; ++c) {
                    if (vc0 + c < RF_VCH) {
                        float v[8];
                        rf_kv_load8(vc, r, RF_DV, 8 * (vc0 + c), v_own, v);
#pragma unroll
                        for (int g = 0; g < G; ++g)
#pragma unroll
                            for (int i = 0; i < 8; ++i) acc[g][c][i] += ej[g] * v[i];
                    }
                }
            }
        }
    }
    // Lane l < RF_VLR gathers the sums of lanes l + RF_VLR, l + 2 RF_VLR, ... (the other rows of each load).
#pragma unroll
    for (int g = 0; g < G; ++g) {
        run_sum[g] = rf_wave_sum(run_sum[g]);
#pragma unroll
        for (int c = 0; c < RF_VCL; ++c)
#pragma unroll
            for (int i = 0; i < 8; ++i) {
                const float a = acc[g][c][i];
#pragma unroll
                for (int r = 1; r < RF_VP; ++r) acc[g][c][i] += __shfl(a, min(lane + r * RF_VLR, RF_WAVE - 1), RF_WAVE);
            }
    }
    if (vp != 0) return;
#pragma unroll
    for (int g = 0; g < G; ++g) {
        const long long o = (long long)t * hq + h0 + g;
#pragma unroll
        for (int c = 0; c < RF_VCL; ++c) {
            const int d = 8 * (vc0 + c);
            if (g >= ng || d >= RF_DV) continue;
            if (gridDim.y == 1) {  // a division, as the merge of splits does: one split and many give the same result
                float4* op = (float4*)(out + o * RF_DV + d);
                op[0] = make_float4(acc[g][c][0] / run_sum[g], acc[g][c][1] / run_sum[g], acc[g][c][2] / run_sum[g],
                                    acc[g][c][3] / run_sum[g]);
                op[1] = make_float4(acc[g][c][4] / run_sum[g], acc[g][c][5] / run_sum[g], acc[g][c][6] / run_sum[g],
                                    acc[g][c][7] / run_sum[g]);
            } else {
                float* pp = part + ((long long)blockIdx.y * m * hq + o) * (RF_DV + 2);
#pragma unroll
                for (int i = 0; i < 8; ++i) pp[d + i] = acc[g][c][i];
                if (d == 0) {
                    pp[RF_DV] = run_max[g];
                    pp[RF_DV + 1] = run_sum[g];
                }
            }
        }
    }
}

// One entry point per chunk size G (query heads per wave): ops.attention takes the smallest that holds a kv head's
// query heads, up to 8.
#define RF_ATTENTION(G)                                                                                            \
    extern "C" __global__ void __launch_bounds__(RF_ATT_WAVES * RF_WAVE) rf_attention_g##G(                       \
        const float* __restrict__ q, kv_t* __restrict__ kc, kv_t* __restrict__ vc,                                 \
        const int32_t* __restrict__ tables, int mb, const int32_t* __restrict__ seq_ids,                           \
        const int32_t* __restrict__ positions, float* __restrict__ out, float* __restrict__ part, int m, int hq,   \
        int hkv, int bs, float scale, int window, float softcap, int split_len, const float* __restrict__ k_new,  \
        const float* __restrict__ v_new) {                                                                         \
        rf_grid_begin();                                                                                           \
        rf_attention_impl<G>(q, kc, vc, tables, mb, seq_ids, positions, out, part, m, hq, hkv, bs, scale, window, \
                             softcap, split_len, k_new, v_new);                                                    \
    }
RF_ATTENTION(1)
RF_ATTENTION(2)
RF_ATTENTION(4)
RF_ATTENTION(8)

// One block per item: merge the splits' partial softmaxes. Only the splits that reach the token's position can
// hold anything (the others have sum 0 and max -inf), so a short sequence in a long cache reads a few partials,
// not all of them. The block's threads share the splits (a thread per value dim walking them all was 40-50 us a
// layer at 129 splits: one round trip to memory after another): the maximum and the denominator by a fixed tree,
// then RF_COMBINE_GROUPS groups of RF_DV threads each take every G-th split's numerators, summed in group order,
// so the arithmetic depends on the token's position and the split length alone (batch invariance). With xq (one
// token, RF_DV % 32 == 0) the output is also quantized for the output projection (rf_q8_store).
#define RF_COMBINE_THREADS 1024
#define RF_COMBINE_MAX 256  // splits at most (ops.DECODE_MAX_SPLITS; prefill's splits are fewer)
#define RF_COMBINE_GROUPS (RF_DV < RF_COMBINE_THREADS ? RF_COMBINE_THREADS / RF_DV : 1)

template <bool MAX>
__device__ __forceinline__ float rf_block_reduce(float v, float* red) {
    const int tid = threadIdx.x;
    red[tid] = v;
    __syncthreads();
#pragma unroll
    for (int o = RF_COMBINE_THREADS / 2; o > 0; o >>= 1) {
        if (tid < o) red[tid] = MAX ? fmaxf(red[tid], red[tid + o]) : red[tid] + red[tid + o];
        __syncthreads();
    }
    const float r = red[0];
    __syncthreads();
    return r;
}

extern "C" __global__ void __launch_bounds__(RF_COMBINE_THREADS)
    rf_attention_combine(const float* __restrict__ part, float* __restrict__ out, int items, int n_splits,
                         int8_t* __restrict__ xq, float* __restrict__ xd, const int32_t* __restrict__ positions,
                         int hq, int split_len) {
    rf_grid_begin();
    __shared__ float red[RF_COMBINE_THREADS], w[RF_COMBINE_MAX], num[RF_COMBINE_GROUPS][RF_DV];
    const int item = blockIdx.x, tid = threadIdx.x;
    const int splits = min(n_splits, positions[item / hq] / split_len + 1);  // n_splits <= RF_COMBINE_MAX: host
    const float* base = part + (long long)item * (RF_DV + 2);
    const long long stride = (long long)items * (RF_DV + 2);
    float mx = -RF_INF;
    for (int s = tid; s < splits; s += RF_COMBINE_THREADS) mx = fmaxf(mx, base[s * stride + RF_DV]);
    mx = rf_block_reduce<true>(mx, red);
    float den = 0.0f;
    for (int s = tid; s < splits; s += RF_COMBINE_THREADS) {
        const float sum = base[s * stride + RF_DV + 1];
        const float ws = sum == 0.0f ? 0.0f : expf(base[s * stride + RF_DV] - mx);
        w[s] = ws;
        den += ws * sum;
    }
    den = rf_block_reduce<false>(den, red);  // its barriers also publish w
    for (int t = tid; t < RF_COMBINE_GROUPS * RF_DV; t += RF_COMBINE_THREADS) {
        const int g = t / RF_DV, d = t % RF_DV;
        float n = 0.0f;
#pragma unroll 8
        for (int s = g; s < splits; s += RF_COMBINE_GROUPS) n += w[s] * base[s * stride + d];
        num[g][d] = n;
    }
    __syncthreads();
    for (int d0 = 0; d0 < RF_DV; d0 += RF_COMBINE_THREADS) {
        const int d = d0 + tid;
        if (d - tid % 32 >= RF_DV) break;  // whole 32-lane groups past the end: rf_q8_store's shuffles
        float n = 0.0f;
        if (d < RF_DV) {
#pragma unroll
            for (int g = 0; g < RF_COMBINE_GROUPS; ++g) n += num[g][d];
            out[(long long)item * RF_DV + d] = n / den;
        }
        if (xq) rf_q8_store(n / den, (long long)item * RF_DV + d, (long long)items * RF_DV, xq, xd);
    }
}
