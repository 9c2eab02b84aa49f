// Host stand-in for kernels/rf_prelude.h: lets a format's device.hip decoder run on the CPU, so that its block
// layout can be checked against gguf-py's dequantizers without a GPU (tests/hip/test_format_device_host.py).
#include <cstdint>
#include <cstring>
#define __device__
#define __forceinline__ inline
#define __constant__ static const
struct uint2 { uint32_t x, y; };
struct int4 { int x, y, z, w; };
struct uint4 { uint32_t x, y, z, w; };
struct float4 { float x, y, z, w; };
static inline float __uint_as_float(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
static inline float rf_half_to_float(uint16_t h) { _Float16 f; std::memcpy(&f, &h, 2); return (float)f; }
static inline uint16_t rf_u16(const uint8_t* p) { uint16_t v; std::memcpy(&v, p, 2); return v; }
static inline uint32_t rf_u32_a2(const uint8_t* p) { return (uint32_t)rf_u16(p) | ((uint32_t)rf_u16(p + 2) << 16); }
static inline int rf_dp4a(int a, int b, int c) {
    for (int i = 0; i < 32; i += 8) c += (int)(int8_t)(a >> i) * (int)(int8_t)(b >> i);
    return c;
}
static inline float rf_f16_at(const uint8_t* p) { return rf_half_to_float(rf_u16(p)); }
static inline uint32_t rf_u32_a4(const uint8_t* p) { uint32_t v; std::memcpy(&v, p, 4); return v; }
static inline uint2 rf_u64_a8(const uint8_t* p) { uint2 v; std::memcpy(&v, p, 8); return v; }
