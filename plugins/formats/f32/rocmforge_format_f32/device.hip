// F32 device code for rocmforge's HIP kernels (interface: docs/HIP.md, "Format device code").
// A kernel block is 8 floats (32 bytes); also used for plain f32 arrays passed where a weight may be.
#define RF_QK 8
#define RF_TS 32

__device__ __forceinline__ void rf_dequant8(const uint8_t* __restrict__ b, int g, float* __restrict__ v) {
    const float4 a = ((const float4*)b)[0], c = ((const float4*)b)[1];
    v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w;
    v[4] = c.x; v[5] = c.y; v[6] = c.z; v[7] = c.w;
}
