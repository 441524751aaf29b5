# Two entry points: `make demo` (the main job) and `make test`. Both build .venv first.
# The editable install puts the checkout itself on the path (compat mode), so packages added later import too.
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test setup clean gpu-check

$(STAMP): pyproject.toml Makefile
	$(PY) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[dev]' --config-settings editable_mode=compat
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ipmcam demo --out out

test: $(STAMP)
	@command -v Xvfb >/dev/null && command -v xwd >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xvfb x11-apps >/dev/null; } || \
	  echo "note: Xvfb/xwd not installed: the preview screenshot test will be skipped"
	@command -v chromium >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "note: chromium not installed: the studio browser test will be skipped"
	$(VENV)/bin/python -m pytest -q

# On a machine with an NVIDIA GPU: parity of every GPU backend with the stored CPU outputs, generator and pipeline
# timings -> docs/bench/gpu.json and docs/benchmarks.md. It runs on the machine's own python (torch with CUDA,
# numpy, onnx, opencv), with no .venv and nothing to install; without a CUDA GPU it says so in one line and fails.
gpu-check:
	PYTHONPATH=src $(PY) -m ipmcam.measure.gpu_check

clean:
	rm -rf $(VENV) out .pytest_cache
