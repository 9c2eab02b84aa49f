// Decodes every 8-element group of the blocks in argv[1] with the format's rf_dequant8 and writes float32 values
// to argv[2] (RF_QK / RF_TS come from the included device.hip). With argv[3] (int8 activations, one per element)
// and a format that has rf_dot8_q8, also writes each group's dot with them to argv[4]; with rf_dot_chunk_q8,
// each RF_CHUNK-element chunk's dot to argv[5].
#include <cstdio>
#include <vector>
int main(int argc, char** argv) {
    FILE* in = std::fopen(argv[1], "rb");
    std::vector<uint8_t> raw;
    uint8_t buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, in)) > 0) raw.insert(raw.end(), buf, buf + n);
    std::fclose(in);
    const size_t blocks = raw.size() / RF_TS;
    std::vector<float> out(blocks * RF_QK);
    for (size_t b = 0; b < blocks; ++b)
        for (int g = 0; g < RF_QK / 8; ++g) rf_dequant8(raw.data() + b * RF_TS, g, out.data() + b * RF_QK + 8 * g);
    FILE* o = std::fopen(argv[2], "wb");
    std::fwrite(out.data(), sizeof(float), out.size(), o);
    std::fclose(o);
    if (argc <= 4) return 0;
    std::vector<int8_t> xq(out.size());
    FILE* xf = std::fopen(argv[3], "rb");
    if (std::fread(xq.data(), 1, xq.size(), xf) != xq.size()) return 1;
    std::fclose(xf);
#ifdef RF_HAS_DOT8_Q8
    std::vector<float> dots(out.size() / 8);
    for (size_t b = 0; b < blocks; ++b)
        for (int g = 0; g < RF_QK / 8; ++g) {
            int w[2];
            std::memcpy(w, xq.data() + b * RF_QK + 8 * g, 8);
            dots[b * (RF_QK / 8) + g] = rf_dot8_q8(raw.data() + b * RF_TS, g, w[0], w[1]);
        }
    FILE* d = std::fopen(argv[4], "wb");
    std::fwrite(dots.data(), sizeof(float), dots.size(), d);
    std::fclose(d);
#endif
#ifdef RF_CHUNK
    if (argc > 5) {  // each chunk's dot, with unit activation scales
        const std::vector<float> ones(out.size() / 32 + 1, 1.0f);
        std::vector<float> chunk_dots(out.size() / RF_CHUNK);
        for (size_t e = 0; e < out.size(); e += RF_CHUNK)
            chunk_dots[e / RF_CHUNK] = rf_dot_chunk_q8(raw.data() + (e / RF_QK) * RF_TS, (int)(e % RF_QK) / RF_CHUNK,
                                                       xq.data() + e / RF_QK * RF_QK, ones.data());
        FILE* c = std::fopen(argv[5], "wb");
        std::fwrite(chunk_dots.data(), sizeof(float), chunk_dots.size(), c);
        std::fclose(c);
    }
#endif
    return 0;
}
