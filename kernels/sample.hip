// Sampling on the device (rocmforge_core/ops/sample.py), one block of RF_SAMPLE_THREADS threads per row of
// logits, so a decode step of any batch reads back one token id per sequence. Chain as the reference: penalties,
// top-k, typical, top-p, min-p, temperature, draw with the same splitmix64 uniform; each row's parameters come
// from params (f64[rows, 7]) and controls (i64[rows, 3]: top_k, seed, step). Before the chain, the row's sparse
// logit bias (K (id, value) pairs, id -1 unused) is added and the tokens its mask (ceil(V/32) words, bit t % 32 of
// word t / 32) leaves out get -inf; candidates at -inf are dropped after top-k. The top-k candidates (1 <= top_k <= RF_SAMPLE_CAP) are found by a radix select over
// the logits and sorted by (logit descending, id ascending); the rest of the chain runs on them in double.
#define RF_SAMPLE_THREADS 1024
#define RF_SAMPLE_CAP 1024

// Order-preserving map of a float to an unsigned key (larger float, larger key).
__device__ __forceinline__ uint32_t rf_order_key(float f) {
    const uint32_t u = __float_as_uint(f);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__device__ __forceinline__ double rf_uniform(uint64_t seed, uint64_t step) {
    uint64_t z = seed * 0x9E3779B97F4A7C15ull + step + 1ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

// Ranks candidates [0, n) of (val, id) by val descending then id ascending (or, with by_key, key ascending then
// index ascending: a stable sort), writing order[rank] = index.
__device__ void rf_rank_sort(const float* val, const int* id, const double* key, int n, int* order) {
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        int r = 0;
        for (int j = 0; j < n; ++j) {
            const bool before = key ? (key[j] < key[i] || (key[j] == key[i] && j < i))
                                    : (val[j] > val[i] || (val[j] == val[i] && id[j] < id[i]));
            r += before;
        }
        order[r] = i;
    }
    __syncthreads();
}

extern "C" __global__ void __launch_bounds__(RF_SAMPLE_THREADS)
    rf_sample(const float* __restrict__ logits_all, float* __restrict__ work_all, int V,
              const int32_t* __restrict__ hist_all, int L, const double* __restrict__ params_all,
              const int64_t* __restrict__ controls_all, const int32_t* __restrict__ mask_all,
              const int64_t* __restrict__ bias_ids_all, const float* __restrict__ bias_values_all, int K,
              int32_t* __restrict__ out_all) {
    rf_grid_begin();
    const int row = blockIdx.x;
    const float* __restrict__ logits = logits_all + (long long)row * V;
    float* __restrict__ work = work_all + (long long)row * V;
    const int32_t* __restrict__ hist = hist_all + (long long)row * L;
    const double* __restrict__ params = params_all + row * 7;
    const int64_t* __restrict__ controls = controls_all + row * 3;
    const int W = (V + 31) / 32;
    const int32_t* __restrict__ mask = mask_all + (long long)row * W;
    const int64_t* __restrict__ bias_ids = bias_ids_all + (long long)row * K;
    const float* __restrict__ bias_values = bias_values_all + (long long)row * K;
    int32_t* __restrict__ out = out_all + row;
    const double temperature = params[0], top_p = params[1], min_p = params[2], typical_p = params[3];
    const float repeat_penalty = (float)params[4];
    const double presence = params[5], frequency = params[6];
    const int top_k = (int)controls[0];
    const uint64_t seed = (uint64_t)controls[1], step = (uint64_t)controls[2];
    __shared__ float cval[RF_SAMPLE_CAP];
    __shared__ int cid[RF_SAMPLE_CAP];
    __shared__ int order[RF_SAMPLE_CAP];
    __shared__ double x[RF_SAMPLE_CAP];
    __shared__ double aux[RF_SAMPLE_CAP];
    __shared__ int hist256[256];
    __shared__ uint32_t sel_prefix, sel_mask;
    __shared__ int sel_remaining, n_cand, n_eq, masked, biased;
    __shared__ float best_v[RF_SAMPLE_THREADS / 32];
    __shared__ int best_i[RF_SAMPLE_THREADS / 32];
    const int tid = threadIdx.x;

    // Bias, mask and penalties, into a copy so the logits stay as they were (made only when one of them acts).
    if (tid == 0) { masked = 0; biased = 0; }
    __syncthreads();
    for (int i = tid; i < W; i += blockDim.x)
        if (mask[i] != -1) masked = 1;
    for (int i = tid; i < K; i += blockDim.x)
        if (bias_ids[i] >= 0) biased = 1;
    __syncthreads();
    const bool penalize = L > 0 && (repeat_penalty != 1.0f || presence != 0.0 || frequency != 0.0);
    const float* lg = logits;
    if (penalize || masked || biased) {
        for (int i = tid; i < V; i += blockDim.x) work[i] = logits[i];
        __syncthreads();
        if (tid == 0)  // in order, one thread: ids are distinct, but the sum is the reference's either way
            for (int j = 0; j < K; ++j) {
                const long long id = bias_ids[j];
                if (id >= 0 && id < V) work[id] = work[id] + bias_values[j];
            }
        __syncthreads();
        if (masked)
            for (int i = tid; i < V; i += blockDim.x)
                if (!((mask[i >> 5] >> (i & 31)) & 1)) work[i] = -RF_INF;
        __syncthreads();
        lg = work;
    }
    if (penalize) {
        for (int i = tid; i < L; i += blockDim.x) {
            const int id = hist[i];
            if (id < 0 || id >= V) continue;
            bool first = true;
            int count = 0;
            for (int j = 0; j < L; ++j) {
                if (hist[j] == id) {
                    if (j < i) first = false;
                    ++count;
                }
            }
            if (!first) continue;
            const float v = work[id];
            const float p = v <= 0.0f ? v * repeat_penalty : v / repeat_penalty;
            work[id] = (float)((double)p - (double)count * frequency - presence);
        }
        __syncthreads();
        lg = work;
    }

    if (temperature <= 0.0) {  // greedy: argmax, ties to the lowest id
        float bv = -RF_INF;
        int bi = 0x7fffffff;
        for (int i = tid; i < V; i += blockDim.x) {
            const float v = lg[i];
            if (v > bv || (v == bv && i < bi)) { bv = v; bi = i; }
        }
        for (int o = RF_WAVE / 2; o > 0; o >>= 1) {
            const float ov = __shfl_xor(bv, o, RF_WAVE);
            const int oi = __shfl_xor(bi, o, RF_WAVE);
            if (ov > bv || (ov == bv && oi < bi)) { bv = ov; bi = oi; }
        }
        const int wave = tid / RF_WAVE, waves = blockDim.x / RF_WAVE;
        if (tid % RF_WAVE == 0) { best_v[wave] = bv; best_i[wave] = bi; }
        __syncthreads();
        if (tid == 0) {
            for (int w = 1; w < waves; ++w)
                if (best_v[w] > bv || (best_v[w] == bv && best_i[w] < bi)) { bv = best_v[w]; bi = best_i[w]; }
            out[0] = bi == 0x7fffffff ? 0 : bi;
        }
        return;
    }

    // Radix select of the k-th largest key, 8 bits at a time from the top.
    const int k = top_k > 0 ? min(top_k, V) : V;  // unbounded: the call's candidates bound is V itself
    if (tid == 0) { sel_prefix = 0u; sel_mask = 0u; sel_remaining = k; }
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int i = tid; i < 256; i += blockDim.x) hist256[i] = 0;
        __syncthreads();
        const uint32_t prefix = sel_prefix, mask = sel_mask;
        for (int i = tid; i < V; i += blockDim.x) {
            const uint32_t key = rf_order_key(lg[i]);
            if ((key & mask) == prefix) atomicAdd(&hist256[(key >> shift) & 255u], 1);
        }
        __syncthreads();
        if (tid == 0) {
            int cum = 0, b = 255;
            for (; b > 0; --b) {
                if (cum + hist256[b] >= sel_remaining) break;
                cum += hist256[b];
            }
            sel_remaining -= cum;
            sel_prefix |= (uint32_t)b << shift;
            sel_mask |= 255u << shift;
        }
        __syncthreads();
    }
    // Candidates: every key above the threshold, then the lowest ids of those equal to it.
    const uint32_t thr = sel_prefix;
    if (tid == 0) { n_cand = 0; n_eq = 0; }
    __syncthreads();
    for (int i = tid; i < V; i += blockDim.x) {
        const uint32_t key = rf_order_key(lg[i]);
        if (key > thr) {
            const int slot = atomicAdd(&n_cand, 1);
            cval[slot] = lg[i];
            cid[slot] = i;
        } else if (key == thr) {
            atomicAdd(&n_eq, 1);
        }
    }
    __syncthreads();
    const int need = sel_remaining, have = n_cand;
    if (n_eq == need) {
        for (int i = tid; i < V; i += blockDim.x) {
            if (rf_order_key(lg[i]) == thr) {
                const int slot = atomicAdd(&n_cand, 1);
                cval[slot] = lg[i];
                cid[slot] = i;
            }
        }
    } else if (tid == 0) {  // more ties than places: take them in id order (rare; one thread is enough)
        int c = have;
        for (int i = 0; i < V && c < have + need; ++i)
            if (rf_order_key(lg[i]) == thr) { cval[c] = lg[i]; cid[c] = i; ++c; }
        n_cand = c;
    }
    __syncthreads();
    int n = n_cand;
    rf_rank_sort(cval, cid, nullptr, n, order);
    for (int i = tid; i < n; i += blockDim.x) aux[i] = (double)cval[order[i]];
    __syncthreads();
    for (int i = tid; i < n; i += blockDim.x) { x[i] = aux[i]; order[i] = cid[order[i]]; }
    __syncthreads();
    // Now x[0..n) descending with ids order[0..n); masked candidates (-inf) are the last ones.
    while (n > 1 && x[n - 1] == -(double)RF_INF) --n;

    if (typical_p < 1.0) {
        if (tid == 0) {
            double sum = 0.0;
            for (int i = 0; i < n; ++i) sum += exp(x[i] - x[0]);
            double entropy = 0.0;
            for (int i = 0; i < n; ++i) {
                const double p = exp(x[i] - x[0]) / sum;
                entropy -= p * log(p + 1e-30);
            }
            for (int i = 0; i < n; ++i) {
                const double p = exp(x[i] - x[0]) / sum;
                aux[i] = fabs(-log(p + 1e-30) - entropy);
            }
        }
        __syncthreads();
        rf_rank_sort(nullptr, nullptr, aux, n, cid);  // cid[rank] = candidate index, stable in shifted
        if (tid == 0) {
            double sum = 0.0;
            for (int i = 0; i < n; ++i) sum += exp(x[i] - x[0]);
            double cum = 0.0;
            int keep = n;
            for (int r = 0; r < n; ++r) {
                cum += exp(x[cid[r]] - x[0]) / sum;
                if (cum >= typical_p) { keep = r + 1; break; }
            }
            for (int i = 0; i < n; ++i) cval[i] = 0.0f;
            for (int r = 0; r < keep; ++r) cval[cid[r]] = 1.0f;
            int c = 0;
            for (int i = 0; i < n; ++i)
                if (cval[i] != 0.0f) { x[c] = x[i]; order[c] = order[i]; ++c; }
            n_cand = c;
        }
        __syncthreads();
        n = n_cand;
    }
    if (tid != 0) return;
    if (top_p < 1.0) {
        double sum = 0.0;
        for (int i = 0; i < n; ++i) sum += exp(x[i] - x[0]);
        double cum = 0.0;
        int keep = n;
        for (int i = 0; i < n; ++i) {
            cum += exp(x[i] - x[0]) / sum;
            if (cum >= top_p) { keep = i + 1; break; }
        }
        n = keep;
    }
    if (min_p > 0.0) {
        const double floor_x = x[0] + log(min_p);
        int c = 0;
        while (c < n && x[c] >= floor_x) ++c;
        n = c;
    }
    double sum = 0.0;
    for (int i = 0; i < n; ++i) sum += exp(x[i] / temperature - x[0] / temperature);
    const double target = rf_uniform(seed, step) * 1.0;
    double cum = 0.0, total = 0.0;
    for (int i = 0; i < n; ++i) total += exp(x[i] / temperature - x[0] / temperature) / sum;
    int idx = n;
    for (int i = 0; i < n; ++i) {
        cum += exp(x[i] / temperature - x[0] / temperature) / sum;
        if (cum > target * total) { idx = i; break; }
    }
    out[0] = order[min(idx, n - 1)];
}

// Log-probabilities of a step's rows (rocmforge_core/ops/logprobs.py), one block of RF_SAMPLE_THREADS threads
// per row, from the raw logits: the sampled token's, then the `top` most likely tokens (logit descending, id
// ascending) with theirs. The normalizer is summed in double; each of the `top` rounds is a block argmax over
// the tokens that come after the previous pick in that order, so no list of picked ids is kept.
extern "C" __global__ void __launch_bounds__(RF_SAMPLE_THREADS)
    rf_logprobs(const float* __restrict__ logits_all, int V, const int32_t* __restrict__ tokens, int top,
                float* __restrict__ out_all) {
    rf_grid_begin();
    const int row = blockIdx.x, tid = threadIdx.x, nt = blockDim.x;
    const float* __restrict__ x = logits_all + (long long)row * V;
    float* __restrict__ out = out_all + (long long)row * (1 + 2 * top);
    __shared__ double red[RF_SAMPLE_THREADS];
    __shared__ float rv[RF_SAMPLE_THREADS];
    __shared__ int ri[RF_SAMPLE_THREADS];

    float m = -RF_INF;
    for (int i = tid; i < V; i += nt) m = fmaxf(m, x[i]);
    rv[tid] = m;
    __syncthreads();
    for (int s = nt / 2; s > 0; s >>= 1) {
        if (tid < s) rv[tid] = fmaxf(rv[tid], rv[tid + s]);
        __syncthreads();
    }
    const double mx = (double)rv[0];
    double sum = 0.0;
    for (int i = tid; i < V; i += nt) sum += exp((double)x[i] - mx);
    red[tid] = sum;
    __syncthreads();
    for (int s = nt / 2; s > 0; s >>= 1) {
        if (tid < s) red[tid] += red[tid + s];
        __syncthreads();
    }
    const double lse = mx + log(red[0]);
    if (tid == 0) {
        const int t = tokens[row];
        out[0] = (t >= 0 && t < V) ? (float)((double)x[t] - lse) : -RF_INF;
    }
    __syncthreads();  // rv is reused below

    float pv = RF_INF;
    int pi = -1;
    for (int k = 0; k < top; ++k) {
        float bv = -RF_INF;
        int bi = 0x7fffffff;
        for (int i = tid; i < V; i += nt) {
            const float v = x[i];
            const bool after = v < pv || (v == pv && i > pi);
            if (after && (v > bv || (v == bv && i < bi))) { bv = v; bi = i; }
        }
        rv[tid] = bv;
        ri[tid] = bi;
        __syncthreads();
        for (int s = nt / 2; s > 0; s >>= 1) {
            if (tid < s && (rv[tid + s] > rv[tid] || (rv[tid + s] == rv[tid] && ri[tid + s] < ri[tid]))) {
                rv[tid] = rv[tid + s];
                ri[tid] = ri[tid + s];
            }
            __syncthreads();
        }
        pv = rv[0];
        pi = ri[0];
        __syncthreads();
        if (tid == 0) {
            out[1 + k] = (float)pi;
            out[1 + top + k] = (float)((double)pv - lse);
        }
    }
}
