// rocmforge emulator: the HIP/CUDA device API the kernels use, on the CPU. Included before kernels/rf_prelude.h,
// which then takes its RF_EMULATOR branch (neither RF_NVIDIA nor AMD). Threads, barriers and shuffles come from
// rf_emu_scheduler.h; everything else is plain host C++ with the GPU's results: IEEE math for the fast
// intrinsics, round-to-nearest-even conversions, real atomics (blocks may run on several OS threads).
//
// With RF_EMU_SCAN only the macros are defined and no header is read: runtime_emulator.py preprocesses a unit
// that way to list its kernels (the `extern "C" __global__ void NAME(` that remain), then builds it for real.
#pragma once
#define RF_EMULATOR 1

#if defined(RF_EMU_SCAN)
#define __global__ __global__
#else
#define __global__
#include "rf_emu_scheduler.h"

#include <limits.h>
#include <math.h>

#include <cmath>
#endif

#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static thread_local
#define __constant__ static const

#define threadIdx (::rf_emu::self()->thread_idx)
#define blockIdx (::rf_emu::self()->block->block_idx)
#define blockDim (::rf_emu::self()->block->block_dim)
#define gridDim (::rf_emu::self()->block->grid_dim)

#define RF_EMU_SITE (::rf_emu::Site{__FILE__, __LINE__})
#define __syncthreads() ::rf_emu::sync_threads(RF_EMU_SITE, 1, ::rf_emu::SYNC)
#define __syncthreads_or(p) ::rf_emu::sync_threads(RF_EMU_SITE, (p), ::rf_emu::SYNC_OR)
#define __syncthreads_and(p) ::rf_emu::sync_threads(RF_EMU_SITE, (p), ::rf_emu::SYNC_AND)
#define __syncthreads_count(p) ::rf_emu::sync_threads(RF_EMU_SITE, (p), ::rf_emu::SYNC_COUNT)
// HIP's mask-less shuffles (width defaults to the wave) and CUDA's *_sync forms (only with every lane in the mask)
#define __shfl(...) ::rf_emu::shfl(RF_EMU_SITE, __VA_ARGS__)
#define __shfl_xor(...) ::rf_emu::shfl_xor(RF_EMU_SITE, __VA_ARGS__)
#define __shfl_sync(mask, ...) ::rf_emu::shfl(::rf_emu::full_mask(RF_EMU_SITE, mask), __VA_ARGS__)
#define __shfl_xor_sync(mask, ...) ::rf_emu::shfl_xor(::rf_emu::full_mask(RF_EMU_SITE, mask), __VA_ARGS__)

#if !defined(RF_EMU_SCAN)
namespace rf_emu {

[[noreturn]] inline void fail_here(Fiber* f, const char* what, Site s, int value, int width) {
    fail(f->block, "lane %d of wave %d (thread %d): %s %d at %s:%d (width %d)", f->lane, f->wave, f->id, what, value,
         s.file, s.line, width);
    abandon(f);
}

inline Fiber* shuffle_lane(Site s, int width) {
    Fiber* f = self();
    if (width < 1 || width > RF_WAVE || (width & (width - 1))) fail_here(f, "a shuffle of width", s, width, width);
    return f;
}

template <class T>
inline T exchange_value(Site s, T v, int source) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffles move values of up to 8 bytes");
    uint64_t bits = 0;
    memcpy(&bits, &v, sizeof(T));
    bits = exchange(s, bits, int(sizeof(T)), source);
    T out;
    memcpy(&out, &bits, sizeof(T));
    return out;
}

// Lane `src` of the caller's `width`-lane group. CUDA wraps a src outside [0, width), HIP reads another group:
// the kernels must not depend on either, so it is an error here.
template <class T>
inline T shfl(Site s, T v, int src, int width = RF_WAVE) {
    Fiber* f = shuffle_lane(s, width);
    if (src < 0 || src >= width) fail_here(f, "reads lane", s, src, width);
    return exchange_value(s, v, (f->lane & ~(width - 1)) + src);
}

template <class T>
inline T shfl_xor(Site s, T v, int mask, int width = RF_WAVE) {
    Fiber* f = shuffle_lane(s, width);
    if (mask < 0 || mask >= width) fail_here(f, "xor-shuffles with mask", s, mask, width);
    return exchange_value(s, v, f->lane ^ mask);
}

inline Site full_mask(Site s, unsigned long long mask) {
    const unsigned long long all = RF_WAVE == 64 ? ~0ull : (1ull << RF_WAVE) - 1;
    if ((mask & all) != all) {
        Fiber* f = self();
        fail(f->block, "thread %d: a *_sync shuffle at %s:%d with mask %#llx; only full masks are emulated", f->id,
             s.file, s.line, mask);
        abandon(f);
    }
    return s;
}

// Atomics: read-modify-write loops over compare-exchange, for every type the GPU allows (float included).
template <class T, class F>
inline T rmw(T* p, F op) {
    T old;
    __atomic_load(p, &old, __ATOMIC_SEQ_CST);
    T want = op(old);
    while (!__atomic_compare_exchange(p, &old, &want, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) want = op(old);
    return old;
}

template <class T>
inline T bits_as(uint64_t u) {
    T out;
    memcpy(&out, &u, sizeof(T));
    return out;
}

}  // namespace rf_emu

template <class T, class U>
inline T atomicAdd(T* p, U v) { return ::rf_emu::rmw(p, [v](T a) { return T(a + T(v)); }); }
template <class T, class U>
inline T atomicSub(T* p, U v) { return ::rf_emu::rmw(p, [v](T a) { return T(a - T(v)); }); }
template <class T, class U>
inline T atomicExch(T* p, U v) { return ::rf_emu::rmw(p, [v](T) { return T(v); }); }
template <class T, class U>
inline T atomicMin(T* p, U v) { return ::rf_emu::rmw(p, [v](T a) { return T(v) < a ? T(v) : a; }); }
template <class T, class U>
inline T atomicMax(T* p, U v) { return ::rf_emu::rmw(p, [v](T a) { return a < T(v) ? T(v) : a; }); }
template <class T, class U>
inline T atomicAnd(T* p, U v) { return ::rf_emu::rmw(p, [v](T a) { return T(a & T(v)); }); }
template <class T, class U>
inline T atomicOr(T* p, U v) { return ::rf_emu::rmw(p, [v](T a) { return T(a | T(v)); }); }
template <class T, class U, class V>
inline T atomicCAS(T* p, U compare, V v) {
    T expected = T(compare);
    T want = T(v);
    __atomic_compare_exchange(p, &expected, &want, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return expected;
}
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
template <class T>
inline T __ldg(const T* p) { return *p; }

// Vector types with CUDA's sizes and alignments (a misaligned vector load faults there too).
struct alignas(8) int2 { int x, y; };
struct alignas(16) int4 { int x, y, z, w; };
struct alignas(8) uint2 { unsigned x, y; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
struct alignas(8) float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
inline int2 make_int2(int x, int y) { return {x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }
inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }

// Reinterpretations and conversions.
inline float __int_as_float(int i) { return ::rf_emu::bits_as<float>(uint32_t(i)); }
inline float __uint_as_float(unsigned u) { return ::rf_emu::bits_as<float>(u); }
inline int __float_as_int(float f) { return __builtin_bit_cast(int, f); }
inline unsigned __float_as_uint(float f) { return __builtin_bit_cast(unsigned, f); }
inline double __longlong_as_double(long long i) { return __builtin_bit_cast(double, i); }
inline long long __double_as_longlong(double d) { return __builtin_bit_cast(long long, d); }
// An addition never fused with a neighbouring multiply (the volatile keeps -ffp-contract away), as CUDA's.
inline float __fadd_rn(float a, float b) {
    volatile float r = a + b;
    return r;
}
// Round to nearest even; NaN gives 0 and out-of-range values saturate, as cvt.rni.s32.f32 does.
inline int __float2int_rn(float x) {
    if (x != x) return 0;
    if (x >= 2147483648.0f) return INT_MAX;
    if (x <= -2147483648.0f) return INT_MIN;
    return int(nearbyintf(x));
}
inline int __dp4a(int a, int b, int c) {
    for (int i = 0; i < 32; i += 8) c += int(int8_t(a >> i)) * int(int8_t(b >> i));
    return c;
}
inline unsigned __dp4a(unsigned a, unsigned b, unsigned c) {
    for (int i = 0; i < 32; i += 8) c += ((a >> i) & 255u) * ((b >> i) & 255u);
    return c;
}

// The fast-math intrinsics, with IEEE (libm) results.
inline float __expf(float x) { return expf(x); }
inline float __exp10f(float x) { return exp10f(x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __log10f(float x) { return log10f(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanf(float x) { return tanf(x); }
inline void __sincosf(float x, float* s, float* c) { sincosf(x, s, c); }
inline float __fdividef(float x, float y) { return x / y; }

// CUDA's integer min/max overloads (math.h has fminf/fmaxf for floats).
template <class A, class B>
inline typename std::common_type<A, B>::type min(A a, B b) {
    typedef typename std::common_type<A, B>::type T;
    return T(b) < T(a) ? T(b) : T(a);
}
template <class A, class B>
inline typename std::common_type<A, B>::type max(A a, B b) {
    typedef typename std::common_type<A, B>::type T;
    return T(a) < T(b) ? T(b) : T(a);
}
#endif
