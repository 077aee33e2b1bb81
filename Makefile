# InteractHand: set-up, tests, the quickstart job and benchmarks.
#   make install      .venv with requirements.txt, plus the system libraries headless rendering needs
#   make test         install, then the whole pytest suite
#   make quickstart   install, then the main job on the built-in defaults (SYNTH data, built-in hand, CPU)
#   make bench        install, then every benchmark in bench/, with one summary

PYTHON ?= python3
VENV   := .venv
VPY    := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install render-libs test quickstart bench clean

install: $(STAMP) render-libs

# pyrender pins PyOpenGL==3.1.0, whose EGL support is broken; its other dependencies are listed in
# requirements.txt, so it is installed without its pins.
$(STAMP): requirements.txt
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --disable-pip-version-check -q -r requirements.txt
	$(VPY) -m pip install --disable-pip-version-check -q --no-deps pyrender==0.1.45
	@touch $(STAMP)

render-libs:
	@bash .ci/render_libs.sh

test: install
	$(VPY) -m pytest -q tests

quickstart: install
	$(VPY) main/quickstart.py

bench: install
	$(VPY) bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache
