# Two entry points: `make demo` (the main job) and `make test`. Both build .venv first.
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test setup clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ipmcam demo --out out

test: $(STAMP)
	@command -v Xvfb >/dev/null && command -v xwd >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xvfb x11-apps >/dev/null; } || \
	  echo "note: Xvfb/xwd not installed: the preview screenshot test will be skipped"
	$(VENV)/bin/python -m pytest -q

clean:
	rm -rf $(VENV) out .pytest_cache
