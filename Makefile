# Two commands do everything on a fresh machine:
#   make demo   install into .venv, then run the end-to-end demo on embedded Push-T data
#   make test   install into .venv, then run the test suite
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
# torch is pinned in constraints.txt: 2.13.0 installs the CPU build here instead of a multi-GB CUDA one.
PIP := $(PY) -m pip install --disable-pip-version-check -q -c constraints.txt
OUT ?= outputs/demo
PYTEST_ARGS ?=

.PHONY: install demo test clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e '.[sim,dev,play]'
	# lpips only for its small linear-layer weights; its torchvision dependency is deliberately skipped.
	$(PY) -m pip install --disable-pip-version-check -q --no-deps lpips==0.1.4
	touch $@

install: $(VENV)/.installed

demo: install
	MUJOCO_GL=$${MUJOCO_GL:-egl} $(VENV)/bin/ivideogpt demo --out $(OUT)

test: install
	MUJOCO_GL=$${MUJOCO_GL:-egl} $(PY) -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) outputs
