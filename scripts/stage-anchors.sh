#!/usr/bin/env bash
# Run here before the device call of scripts/serving-bench.sh: copies the trimmed llama.cpp source and
# llama.cpp's Llama-3 vocabulary from ../shared/anchors (which does not travel) into .carry/, and fetches the
# wheels the device lacks into .whl/ (scripts/fetch-device-wheels.sh) unless they are there; both folders are
# git-ignored and go with the call as carry: [".carry", ".whl"].
set -euo pipefail
cd "$(dirname "$0")/.."
ANCHORS=${ANCHORS:-../shared/anchors}
mkdir -p .carry
cp "$ANCHORS/llamacpp-src.tgz" "$ANCHORS/ggml-vocab-llama-bpe.gguf" .carry/
ls .whl/*.whl >/dev/null 2>&1 || scripts/fetch-device-wheels.sh
du -sh .carry .whl
