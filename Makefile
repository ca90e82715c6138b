# The README's two commands: `make demo` and `make test`. Both install first.
PY ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
DEMO_OUT ?= demo_out
PYTEST_ARGS ?=
# Test processes: one per core of a 2-core CI machine (each test module stays on one worker, so its
# module fixtures are built once); TEST_WORKERS=0 runs in this process. A default-suite test that
# runs past 15 minutes (the slowest takes ~2.5) fails with its traceback instead of hanging CI.
TEST_WORKERS ?= 2

.PHONY: install apt test test-slow demo clean tpu-compiler gpu-compiler

# Idempotent: rebuilds .venv only when setup.cfg changes.
install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg setup.py pyproject.toml
	@test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[test,torch]'
	@touch $@

# libtpu, the TPU compiler of tools/compile_step.py (no TPU needed), at the version jax 0.10.2's
# [tpu] extra pins; in its own folder, off the venv's import path (slmjax/train/tpu_topology.py).
LIBTPU ?= libtpu==0.0.42.*
tpu-compiler: $(VENV)/tpu-compiler/.installed

$(VENV)/tpu-compiler/.installed: | $(VENV)/.installed
	$(VPY) -m pip install -q --no-deps --upgrade --target $(VENV)/tpu-compiler '$(LIBTPU)'
	@touch $@

# JAX's CUDA plugin at jax's version, the GPU compiler of tools/compile_step.py (no GPU or CUDA
# libraries needed); in its own folder, off the venv's import path (slmjax/train/gpu_topology.py).
JAX_CUDA ?= $(shell sed -n 's/^ *jax==\([0-9.]*\).*/\1/p' setup.cfg)
gpu-compiler: $(VENV)/gpu-compiler/.installed

$(VENV)/gpu-compiler/.installed: setup.cfg | $(VENV)/.installed
	$(VPY) -m pip install -q --no-deps --upgrade --target $(VENV)/gpu-compiler 'jax-cuda13-plugin==$(JAX_CUDA)' 'jax-cuda13-pjrt==$(JAX_CUDA)'
	@touch $@

# System packages: TTS engines, real recorded speech for tests, tcmalloc (slmjax/hostalloc.py; root on Debian).
apt:
	@if command -v apt-get >/dev/null 2>&1 && ! (command -v espeak-ng >/dev/null && test -d /usr/share/pocketsphinx/test/data && test -f /usr/share/dict/words && ls /usr/lib/*/libtcmalloc_minimal.so.4 >/dev/null 2>&1); then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq espeak-ng pocketsphinx-testdata wamerican libtcmalloc-minimal4 >/dev/null; \
	fi

test: apt install tpu-compiler gpu-compiler
	XLA_FLAGS=--xla_force_host_platform_device_count=8 $(VPY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --timeout=900 $(PYTEST_ARGS)

test-slow: apt install tpu-compiler gpu-compiler
	XLA_FLAGS=--xla_force_host_platform_device_count=8 $(VPY) -m pytest -q -m slow -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

demo: apt install
	$(VPY) -m slmjax.demo --out=$(DEMO_OUT)

clean:
	rm -rf $(VENV) build *.egg-info
