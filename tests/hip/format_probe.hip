// Kernels that expose a format's device code group by group, for tests/hip/test_emulator.py: built after the
// format's device.hip (instead of quant.hip) and run on the emulator, they are checked against the format's numpy
// reference. One thread per 8-element group (or per chunk); blocks are packed back to back.

extern "C" __global__ void rf_probe_dequant(const uint8_t* __restrict__ blocks, float* __restrict__ out, int groups) {
    const int g = blockIdx.x * blockDim.x + threadIdx.x;
    if (g < groups) rf_dequant8(blocks + (long long)(g / (RF_QK / 8)) * RF_TS, g % (RF_QK / 8), out + 8 * (long long)g);
}

#if defined(RF_HAS_DOT8_Q8)
// Each group's dot with eight signed bytes of xq (one per element).
extern "C" __global__ void rf_probe_dot8(const uint8_t* __restrict__ blocks, const int8_t* __restrict__ xq,
                                         float* __restrict__ out, int groups) {
    const int g = blockIdx.x * blockDim.x + threadIdx.x;
    if (g >= groups) return;
    const int2 q = *(const int2*)(xq + 8 * (long long)g);
    out[g] = rf_dot8_q8(blocks + (long long)(g / (RF_QK / 8)) * RF_TS, g % (RF_QK / 8), q.x, q.y);
}
#endif

#if defined(RF_CHUNK)
// Each chunk's dot with the block's activations xq (scales xd, one per 32 elements).
extern "C" __global__ void rf_probe_chunk(const uint8_t* __restrict__ blocks, const int8_t* __restrict__ xq,
                                          const float* __restrict__ xd, float* __restrict__ out, int chunks) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= chunks) return;
    const long long b = c / (RF_QK / RF_CHUNK);
    const int cc = c % (RF_QK / RF_CHUNK);
    out[c] = rf_chunk_dot(rf_chunk_load(blocks + b * RF_TS, cc), cc, xq + b * RF_QK, xd + b * (RF_QK / 32));
}
#endif
