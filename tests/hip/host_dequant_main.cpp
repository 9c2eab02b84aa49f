// Decodes every 8-element group of the blocks in argv[1] with the format's rf_dequant8 and writes float32 values
// to argv[2] (RF_QK / RF_TS come from the included device.hip).
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
    return 0;
}
