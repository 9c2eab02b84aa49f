// Small ops: add, scale, gated activations, RMSNorm, RoPE, transpose. All f32, contiguous.

extern "C" __global__ void rf_add(const float* __restrict__ a, const float* __restrict__ b, float* __restrict__ out,
                                  long long n, long long nb) {
    rf_grid_begin();
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = a[i] + b[nb == n ? i : i % nb];  // nb < n: b is one row broadcast over a's rows
}

extern "C" __global__ void rf_scale(const float* __restrict__ x, float* __restrict__ out, long long n, float s) {
    rf_grid_begin();
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = x[i] * s;
}

// kind 0: silu(gate) * up; kind 1: gelu_tanh(gate) * up. With xq (rows of n % 32 == 0 elements) the result is also
// quantized for the next product (rf_q8_store), saving that product a launch.
extern "C" __global__ void rf_activation(const float* __restrict__ gate, const float* __restrict__ up,
                                         float* __restrict__ out, long long n, int kind, int8_t* __restrict__ xq,
                                         float* __restrict__ xd) {
    rf_grid_begin();
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    float r = 0.0f;
    if (i < n) {
        const float g = gate[i];
        float a;
        if (kind == 0) {
            a = g / (1.0f + expf(-g));
        } else {
            a = 0.5f * g * (1.0f + tanhf(0.7978845608028654f * (g + 0.044715f * g * g * g)));
        }
        r = a * up[i];
        out[i] = r;
    }
    if (xq) rf_q8_store(r, i, n, xq, xd);
}

// One block per row: out = x / sqrt(mean(x^2) + eps) * w. With xq (d % 32 == 0, rows of a decode batch) the result is also
// quantized for the next products (rf_q8_store), saving them a launch. The host sizes the block so that each
// thread holds at most RF_NORM_PER elements where it can: they stay in registers between the two passes, and
// every load is issued up front (a loop of dependent round trips to memory made this kernel 5 us long).
#define RF_NORM_PER 4
extern "C" __global__ void __launch_bounds__(1024)
    rf_rmsnorm(const float* __restrict__ x, const float* __restrict__ w, float* __restrict__ out, int d, float eps,
               int8_t* __restrict__ xq, float* __restrict__ xd) {
    rf_grid_begin();
    const float* xr = x + (long long)blockIdx.x * d;
    float* o = out + (long long)blockIdx.x * d;
    if (xq) {  // this row's 8-bit copy
        xq += (long long)blockIdx.x * d;
        xd += (long long)blockIdx.x * (d / 32);
    }
    const int nt = blockDim.x;
    if (d <= RF_NORM_PER * nt) {
        float v[RF_NORM_PER], g[RF_NORM_PER];
        float ss = 0.0f;
#pragma unroll
        for (int j = 0; j < RF_NORM_PER; ++j) {
            const int i = threadIdx.x + j * nt;
            v[j] = i < d ? xr[i] : 0.0f;
            g[j] = i < d ? w[i] : 0.0f;
            ss += v[j] * v[j];
        }
        ss = rf_block_sum(ss);
        const float inv = 1.0f / sqrtf(ss / (float)d + eps);
#pragma unroll
        for (int j = 0; j < RF_NORM_PER; ++j) {
            const int i = threadIdx.x + j * nt;
            if (j * nt >= d) break;  // uniform over the block
            const float r = v[j] * inv * g[j];
            if (i < d) o[i] = r;
            if (xq) rf_q8_store(r, i, d, xq, xd);
        }
        return;
    }
    float ss = 0.0f;
    for (int i = threadIdx.x; i < d; i += nt) ss += xr[i] * xr[i];
    ss = rf_block_sum(ss);
    const float inv = 1.0f / sqrtf(ss / (float)d + eps);
    for (int i = threadIdx.x; i < d; i += nt) {
        const float r = xr[i] * inv * w[i];
        o[i] = r;
        if (xq) rf_q8_store(r, i, d, xq, xd);
    }
}

// One thread per (token, head, j < head_dim / 2): j < n_rot / 2 turns pair j, the rest copy two of the
// dimensions from n_rot on. Angles in double: positions reach 10^5 and the reference's angles are float64.
// A second tensor x2 [m, heads2, d] (heads2 > 0) is turned the same way in the same launch: q and k.
extern "C" __global__ void rf_rope(const float* __restrict__ x, const int32_t* __restrict__ positions,
                                   const float* __restrict__ freq_factors, float* __restrict__ out, int m, int heads,
                                   int d, int n_rot, double base, double freq_scale, int neox,
                                   const float* __restrict__ x2, float* __restrict__ out2, int heads2) {
    rf_grid_begin();
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const int halfd = d / 2, half = n_rot / 2;
    const long long first = (long long)m * heads * halfd;
    if (i >= first) {
        i -= first;
        x = x2;
        out = out2;
        heads = heads2;
    }
    if (i >= (long long)m * heads * halfd) return;
    const int j = (int)(i % halfd);
    const long long row = i / halfd;
    const int t = (int)(row / heads);
    const float* xr = x + row * d;
    float* o = out + row * d;
    if (j >= half) {
        const int c = n_rot + 2 * (j - half);
        o[c] = xr[c];
        o[c + 1] = xr[c + 1];
        return;
    }
    double inv = pow(base, -2.0 * (double)j / (double)n_rot);
    if (freq_factors) inv /= (double)freq_factors[j];
    const double theta = (double)positions[t] * freq_scale * inv;
    // Reduced to [-pi, pi] in double, then a float sincos: as exact as double cos/sin at float output, and much
    // shorter than them (this kernel is latency-bound).
    float s, c;
    sincosf((float)(theta - 6.283185307179586 * rint(theta * 0.15915494309189535)), &s, &c);
    const int ia = neox ? j : 2 * j, ib = neox ? j + half : 2 * j + 1;
    const float a = xr[ia], b = xr[ib];
    o[ia] = a * c - b * s;
    o[ib] = a * s + b * c;
}

// out[c, r] = x[r, c] through a 32x33 shared tile (the pad keeps column reads off one bank).
extern "C" __global__ void rf_transpose(const float* __restrict__ x, float* __restrict__ out, int rows, int cols) {
    rf_grid_begin();
    __shared__ float tile[32][33];
    const int c0 = blockIdx.x * 32, r0 = blockIdx.y * 32;
    for (int i = threadIdx.y; i < 32; i += blockDim.y) {
        const int r = r0 + i, c = c0 + threadIdx.x;
        if (r < rows && c < cols) tile[i][threadIdx.x] = x[(long long)r * cols + c];
    }
    __syncthreads();
    for (int i = threadIdx.y; i < 32; i += blockDim.y) {
        const int c = c0 + i, r = r0 + threadIdx.x;
        if (r < rows && c < cols) out[(long long)c * rows + r] = tile[threadIdx.x][i];
    }
}

// f32 -> f16 (round to nearest even), the activations' input to the BLAS prefill path.
extern "C" __global__ void rf_to_f16(const float* __restrict__ x, uint16_t* __restrict__ out, long long n) {
    rf_grid_begin();
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = rf_float_to_half(x[i]);
}

// x f32[k] (k % 32 == 0; the rows of a batch end to end) to 8 bits per 32 elements (rf_q8_store), for the
// integer-dot decode products.
extern "C" __global__ void rf_quantize_q8(const float* __restrict__ x, int8_t* __restrict__ xq, float* __restrict__ xd,
                                          int k) {
    rf_grid_begin();
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    rf_q8_store(i < k ? x[i] : 0.0f, i, k, xq, xd);
}

// flag[0] = 1 when every x[i] (i < n) is finite, else 0, so that the run-time guard reads 4 bytes instead of a
// step's logits. Each block counts its share (16-byte loads; x is 256-byte aligned) into partial[]; the last block
// to finish (counted in `done`, which it sets back to 0 for the next call) adds them up.
extern "C" __global__ void __launch_bounds__(256)
    rf_all_finite(const float* __restrict__ x, long long n, int32_t* __restrict__ flag, float* partial,
                  uint32_t* done) {
    rf_grid_begin();
    __shared__ bool last;
    float bad = 0.0f;
    const long long n4 = n / 4, stride = (long long)gridDim.x * blockDim.x;
    const float4* x4 = (const float4*)x;
    const long long start = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    for (long long i = start; i < n4; i += stride) {
        const float4 v = x4[i];
        bad += (isfinite(v.x) && isfinite(v.y) && isfinite(v.z) && isfinite(v.w)) ? 0.0f : 1.0f;
    }
    for (long long i = 4 * n4 + start; i < n; i += stride) bad += isfinite(x[i]) ? 0.0f : 1.0f;
    bad = rf_block_sum(bad);
    if (threadIdx.x == 0) {
        partial[blockIdx.x] = bad;
        __threadfence();
        last = atomicAdd(done, 1u) == gridDim.x - 1;
        if (last) atomicExch(done, 0u);  // every block has counted: ready for the next call
    }
    __syncthreads();
    if (!last) return;
    float total = 0.0f;
    for (int i = threadIdx.x; i < (int)gridDim.x; i += blockDim.x) total += ((volatile float*)partial)[i];
    total = rf_block_sum(total);
    if (threadIdx.x == 0) flag[0] = total == 0.0f;
}
