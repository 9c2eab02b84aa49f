#!/usr/bin/env bash
# The AMD compile-check toolchain (docs/HIP.md): clang-19/lld-19/llvm-19 from Debian, and ROCm 5.2.3's HIP
# headers and device libraries unpacked (not installed) into a prefix, plus the oclc_isa_version_*.bc files that
# targets newer than ROCm 5.2 need. Idempotent: a second run only checks a stamp.
# Prefix: $ROCMFORGE_AMD_PREFIX or build/amd-toolchain in the repository.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="${ROCMFORGE_AMD_PREFIX:-$ROOT/build/amd-toolchain}"
STAMP="$PREFIX/.complete-v2"
# Targets newer than ROCm 5.2: file suffix clang looks for (oclc_isa_version_<suffix>.bc) and the ISA version
# number the library holds (major*1000 + minor*100 + stepping, as in newer ROCm device libraries).
NEW_TARGETS="942:9402 1100:11000 1201:12001"

have_clang() { command -v clang-19 >/dev/null && command -v llvm-as-19 >/dev/null && command -v ld.lld-19 >/dev/null; }

if have_clang && [ -f "$STAMP" ]; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "install-amd-toolchain: need root or sudo to apt-get install clang-19" >&2; exit 1; }
    SUDO=sudo
fi

if ! have_clang; then
    echo "install-amd-toolchain: installing clang-19 lld-19 llvm-19 (apt-get)"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends clang-19 lld-19 llvm-19 >/dev/null
fi

mkdir -p "$PREFIX/debs"
cd "$PREFIX/debs"
for pkg in libamdhip64-dev rocm-device-libs; do
    ls ${pkg}_*.deb >/dev/null 2>&1 || apt-get download -qq "$pkg"
    dpkg -x ${pkg}_*.deb "$PREFIX"
done

# One directory of device libraries: Debian's bitcode plus the generated ISA-version files.
BC_SRC="$(dirname "$(find "$PREFIX/usr" -name 'ocml.bc' | head -n1)")"
[ -n "$BC_SRC" ] || { echo "install-amd-toolchain: ocml.bc not found in rocm-device-libs" >&2; exit 1; }
rm -rf "$PREFIX/bitcode" && mkdir -p "$PREFIX/bitcode" && cp -f "$BC_SRC"/*.bc "$PREFIX/bitcode/"
LAYOUT="e-p:64:64-p1:64:64-p2:32:32-p3:32:32-p4:64:64-p5:32:32-p6:32:32-p7:160:256:256:32-p8:128:128-i64:64-v16:16-v24:32-v32:32-v48:64-v96:128-v192:256-v256:256-v512:512-v1024:1024-v2048:2048-n32:64-S32-A5-G1-ni:7:8"
for entry in $NEW_TARGETS; do
    n="${entry#*:}"
    out="$PREFIX/bitcode/oclc_isa_version_${entry%%:*}.bc"
    [ -f "$out" ] && continue
    printf 'target datalayout = "%s"\ntarget triple = "amdgcn-amd-amdhsa"\n@__oclc_ISA_version = linkonce_odr protected local_unnamed_addr addrspace(4) constant i32 %s, align 4\n' \
        "$LAYOUT" "$n" | llvm-as-19 -o "$out"
done

touch "$STAMP"
echo "install-amd-toolchain: ready in $PREFIX"
