// rocmforge device prelude: the one header every kernel source starts with.
//
// The .hip sources are written against HIP's device API and build unchanged on HIP's two platforms:
//   AMD     hiprtc at run time, or clang -x hip ahead of time (CI checks gfx90a, gfx942, gfx1100, gfx1201);
//   NVIDIA  NVRTC to a cubin. CUDA has no HIP headers, so this prelude supplies what the kernels use: the
//           mask-less shuffles __shfl and __shfl_xor (HIP's NVIDIA headers map them to the *_sync forms with a
//           full mask), fixed-width integers (NVRTC has no <stdint.h>), and half-precision conversions.
//   RF_EMULATOR  the host C++ compiler, for the CPU (the emulator platform): its header
//           (rocmforge_rocm_hip/emulator/rf_emu_device.h) comes first and supplies the device API; the code
//           below takes the generic paths (no NVIDIA or AMD intrinsics).
// RF_WAVE (32 or 64) is defined by the runtime from the device: warpSize is not a compile-time constant.

#ifndef RF_WAVE
#error "RF_WAVE (the device's wave size, 32 or 64) must be defined when compiling rocmforge kernels"
#endif

#if defined(__CUDACC__)
#define RF_NVIDIA 1
#elif !defined(__HIPCC_RTC__) && !defined(RF_EMULATOR)
#include <hip/hip_runtime.h>  // hiprtc includes it implicitly
#endif

#if defined(__CUDACC__) || defined(__HIPCC_RTC__)
// NVRTC has no <stdint.h>; hiprtc (ROCm 5.x) lacks the narrow fixed-width types.
typedef signed char int8_t;
typedef unsigned char uint8_t;
typedef short int16_t;
typedef unsigned short uint16_t;
typedef int int32_t;
typedef unsigned int uint32_t;
typedef long long int64_t;
typedef unsigned long long uint64_t;
#endif

#if defined(RF_NVIDIA)
template <class T> __device__ __forceinline__ T __shfl(T v, int lane, int width = 32) {
    return __shfl_sync(0xffffffffu, v, lane, width);
}
template <class T> __device__ __forceinline__ T __shfl_xor(T v, int mask, int width = 32) {
    return __shfl_xor_sync(0xffffffffu, v, mask, width);
}

__device__ __forceinline__ float rf_half_to_float(uint16_t h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}
__device__ __forceinline__ uint16_t rf_float_to_half(float f) {
    uint16_t h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}
#else
__device__ __forceinline__ float rf_half_to_float(uint16_t h) { return (float)__builtin_bit_cast(_Float16, h); }
__device__ __forceinline__ uint16_t rf_float_to_half(float f) { return __builtin_bit_cast(uint16_t, (_Float16)f); }
#endif

#define RF_INF __int_as_float(0x7f800000)

// First statement of every kernel. On NVIDIA sm_90+ the runtime launches kernels with programmatic stream
// serialization, so a kernel's blocks may start while the previous kernel still runs: wait here until it has
// finished and its writes are visible, then let the next kernel start its own launch. Nothing touches memory
// before this call. Elsewhere, kernels of one stream simply run one after another.
__device__ __forceinline__ void rf_grid_begin() {
#if defined(RF_NVIDIA) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

// Dot product of four signed bytes with four signed bytes, plus c: one instruction where the target has one.
__device__ __forceinline__ int rf_dp4a(int a, int b, int c) {
#if defined(RF_NVIDIA)
    return __dp4a(a, b, c);
#elif defined(__GFX11__) || defined(__GFX12__)
    return __builtin_amdgcn_sudot4(true, a, true, b, c, false);
#elif defined(__gfx906__) || defined(__gfx908__) || defined(__gfx90a__) || defined(__gfx940__) || \
    defined(__gfx941__) || defined(__gfx942__) || defined(__gfx1030__)
    return __builtin_amdgcn_sdot4(a, b, c, false);
#else
#pragma unroll
    for (int i = 0; i < 32; i += 8) c += (int)(int8_t)(a >> i) * (int)(int8_t)(b >> i);
    return c;
#endif
}

// Integer tile product on a group of 32 lanes (one NVIDIA warp; half a wave64): c += A . B with A 16x16 and B
// 16x8 signed bytes, c 16x8 int32. Lane l (g = l / 4, t = l % 4) holds four bytes of A's rows g (a0) and g + 8
// (a1) and of B's column g (b), each at k = 4t .. 4t+3, and c's rows g (c[0], c[1]) and g + 8 (c[2], c[3]) at
// columns 2t, 2t + 1 (PTX's mma.m16n8k16 .s8 layout). Integer sums are exact, so the tensor-core instruction and
// the shuffle version (the emulator's, and any target without one) give identical results.
#if defined(RF_NVIDIA) && (!defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800)
#define RF_HAS_MMA_S8 1
__device__ __forceinline__ void rf_mma_s8(int a0, int a1, int b, int* c) {
    asm("mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5}, {%6}, {%0, %1, %2, %3};"
        : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
        : "r"(a0), "r"(a1), "r"(b));
}
#elif defined(RF_EMULATOR)
#define RF_HAS_MMA_S8 1
__device__ __forceinline__ void rf_mma_s8(int a0, int a1, int b, int* c) {
    const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
#pragma unroll
    for (int u = 0; u < 4; ++u) {
        const int r0 = __shfl(a0, 4 * g + u, 32), r1 = __shfl(a1, 4 * g + u, 32);
        const int b0 = __shfl(b, 8 * t + u, 32), b1 = __shfl(b, 8 * t + 4 + u, 32);
        c[0] = rf_dp4a(r0, b0, c[0]);
        c[1] = rf_dp4a(r0, b1, c[1]);
        c[2] = rf_dp4a(r1, b0, c[2]);
        c[3] = rf_dp4a(r1, b1, c[3]);
    }
}
#endif

// Little-endian reads at 2-byte alignment: GGUF blocks (18, 22, 34, 210 bytes...) only guarantee that much.
__device__ __forceinline__ uint16_t rf_u16(const uint8_t* p) { return *(const uint16_t*)p; }
__device__ __forceinline__ uint32_t rf_u32_a2(const uint8_t* p) {
    return (uint32_t)rf_u16(p) | ((uint32_t)rf_u16(p + 2) << 16);
}
__device__ __forceinline__ float rf_f16_at(const uint8_t* p) { return rf_half_to_float(rf_u16(p)); }
// Wider reads for formats whose block size keeps them aligned: a row starts 256-byte aligned and block b of it at
// b * type_size, so a 144-byte Q4_K block allows 8-byte reads at offsets that are multiples of 8.
__device__ __forceinline__ uint32_t rf_u32_a4(const uint8_t* p) { return *(const uint32_t*)p; }
__device__ __forceinline__ uint2 rf_u64_a8(const uint8_t* p) { return *(const uint2*)p; }

__device__ __forceinline__ float rf_wave_sum(float v) {
#pragma unroll
    for (int o = RF_WAVE / 2; o > 0; o >>= 1) v += __shfl_xor(v, o, RF_WAVE);
    return v;
}
__device__ __forceinline__ float rf_wave_max(float v) {
#pragma unroll
    for (int o = RF_WAVE / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor(v, o, RF_WAVE));
    return v;
}

// Sum over the whole block (blockDim.x a multiple of RF_WAVE, at most 1024); every thread gets the result.
__device__ __forceinline__ float rf_block_sum(float v) {
    __shared__ float part[1024 / 32];
    const int lane = threadIdx.x % RF_WAVE, wave = threadIdx.x / RF_WAVE, waves = blockDim.x / RF_WAVE;
    v = rf_wave_sum(v);
    __syncthreads();  // part[] may still be read by a previous call
    if (lane == 0) part[wave] = v;
    __syncthreads();
    v = lane < waves ? part[lane] : 0.0f;
    return rf_wave_sum(v);
}

// Element i of an f32 row of length k to 8 bits per 32 elements, for the integer-dot decode products:
// xq[i] = round(x / d), d = max|x| / 127 over its 32-element group. The 32 threads of an aligned group of lanes
// hold the 32 elements of one group and all call this (the width-32 shuffles keep to the group on wave64 too).
__device__ __forceinline__ void rf_q8_store(float v, long long i, long long k, int8_t* __restrict__ xq,
                                            float* __restrict__ xd) {
    float a = fabsf(v);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) a = fmaxf(a, __shfl_xor(a, o, 32));
    const float d = a / 127.0f;
    if (i < k) {
        xq[i] = (int8_t)(d > 0.0f ? __float2int_rn(v / d) : 0);
        if ((i & 31) == 0) xd[i >> 5] = d;
    }
}
