#!/usr/bin/env bash
# Wheels the GPU machine lacks (it has no package registry): gguf and jsonschema for the tests and bench, the
# serving stack for the serving GPU test. Run here; carry .whl (git-ignored) with the device call, whose
# scripts/gpu-check.sh installs them. Python 3.12, x86-64, as on that machine.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_31_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
    gguf==0.19.0 jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1 \
    starlette==1.10.0 uvicorn==0.54.0 h11==0.16.0 anyio==4.16.0 sniffio==1.3.1 click==8.5.1 httpx==0.28.1 \
    httpcore==1.0.9 certifi==2026.10.18 idna==3.20 pluggy==1.7.0 prometheus-client==0.26.0 pydantic==2.14.4 \
    pydantic-core==2.50.5 annotated-types==0.8.0 typing-extensions==4.16.0 typing-inspection==0.4.5 openai==3.60.0 \
    jiter==0.19.0 httpx2==2.16.2 httpcore2==2.16.2 truststore==0.10.5 llguidance==1.9.1
ls .whl
