// Small ops: add, scale, gated activations, RMSNorm, RoPE, transpose. All f32, contiguous.

extern "C" __global__ void rf_add(const float* __restrict__ a, const float* __restrict__ b, float* __restrict__ out,
                                  long long n, long long nb) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = a[i] + b[nb == n ? i : i % nb];  // nb < n: b is one row broadcast over a's rows
}

extern "C" __global__ void rf_scale(const float* __restrict__ x, float* __restrict__ out, long long n, float s) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = x[i] * s;
}

// kind 0: silu(gate) * up; kind 1: gelu_tanh(gate) * up.
extern "C" __global__ void rf_activation(const float* __restrict__ gate, const float* __restrict__ up,
                                         float* __restrict__ out, long long n, int kind) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float g = gate[i];
    float a;
    if (kind == 0) {
        a = g / (1.0f + expf(-g));
    } else {
        a = 0.5f * g * (1.0f + tanhf(0.7978845608028654f * (g + 0.044715f * g * g * g)));
    }
    out[i] = a * up[i];
}

// One block per row: out = x / sqrt(mean(x^2) + eps) * w.
extern "C" __global__ void __launch_bounds__(256)
    rf_rmsnorm(const float* __restrict__ x, const float* __restrict__ w, float* __restrict__ out, int d, float eps) {
    const float* xr = x + (long long)blockIdx.x * d;
    float* o = out + (long long)blockIdx.x * d;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < d; i += blockDim.x) ss += xr[i] * xr[i];
    ss = rf_block_sum(ss);
    const float inv = 1.0f / sqrtf(ss / (float)d + eps);
    for (int i = threadIdx.x; i < d; i += blockDim.x) o[i] = xr[i] * inv * w[i];
}

// One thread per (token, head, j < head_dim / 2): j < n_rot / 2 turns pair j, the rest copy two of the
// dimensions from n_rot on. Angles in double: positions reach 10^5 and the reference's angles are float64.
extern "C" __global__ void rf_rope(const float* __restrict__ x, const int32_t* __restrict__ positions,
                                   const float* __restrict__ freq_factors, float* __restrict__ out, int m, int heads,
                                   int d, int n_rot, double base, double freq_scale, int neox) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const int halfd = d / 2, half = n_rot / 2;
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
    const float c = (float)cos(theta), s = (float)sin(theta);
    const int ia = neox ? j : 2 * j, ib = neox ? j + half : 2 * j + 1;
    const float a = xr[ia], b = xr[ib];
    o[ia] = a * c - b * s;
    o[ib] = a * s + b * c;
}

// out[c, r] = x[r, c] through a 32x33 shared tile (the pad keeps column reads off one bank).
extern "C" __global__ void rf_transpose(const float* __restrict__ x, float* __restrict__ out, int rows, int cols) {
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
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = rf_float_to_half(x[i]);
}

// x f32[k] (k % 32 == 0) to 8 bits per 32 elements: xq = round(x / d), d = max|x| / 127, for the integer-dot
// decode products. 32 consecutive threads share one block of 32 elements.
extern "C" __global__ void rf_quantize_q8(const float* __restrict__ x, int8_t* __restrict__ xq, float* __restrict__ xd,
                                          int k) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const float v = i < k ? x[i] : 0.0f;
    float a = fabsf(v);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) a = fmaxf(a, __shfl_xor(a, o, 32));
    const float d = a / 127.0f;
    if (i < k) {
        xq[i] = (int8_t)(d > 0.0f ? __float2int_rn(v / d) : 0);
        if ((i & 31) == 0) xd[i >> 5] = d;
    }
}
