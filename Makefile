# Every target sets up its own virtual environment, so a fresh clone needs only python3 (>= 3.11).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: venv demo test lint format golden clean debian-data

DEMO_DIR ?= runs/demo
DEMO_CONFIG ?= configs/clip_shapes.py

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch sits in the same command as everything else so pip never swaps in a CUDA build to satisfy a range
	$(PY) -m pip install -q -c constraints.txt -e '.[test,experiments]' 'torch==2.13.0'
	touch $(STAMP)

venv: $(STAMP)

# Offline data from Debian packages: Fashion-MNIST (configs/lit_fashion.py), real speech recordings with transcripts
# (pocketsphinx-testdata) and a speech synthesiser (espeak-ng) for the audio tests. Installed where apt-get runs as
# root; elsewhere a note, and the tests that need them skip naming the package.
DEBIAN_DATA := dataset-fashion-mnist pocketsphinx-testdata espeak-ng
debian-data:
	@missing=$$(for p in $(DEBIAN_DATA); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get install -y -q $$missing >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && \
	    apt-get install -y -q $$missing >/dev/null 2>&1) || echo "note: apt-get could not install $$missing"; \
	else echo "note: not installing $$missing (needs root and apt-get); the tests that need it are skipped"; fi

# Builds the shapes dataset (first run only), trains the CLIP demo, evaluates on the held-out test split, prints
# the results table and draws the plots into $(DEMO_DIR). Rerunning resumes, or only reports if already done.
demo: $(STAMP)
	$(VENV)/bin/mmjax train --config $(DEMO_CONFIG) --workdir $(DEMO_DIR)
	$(PY) experiments/demo_report.py --config $(DEMO_CONFIG) --workdir $(DEMO_DIR)

lint: $(STAMP)
	$(VENV)/bin/ruff check mmjax tests configs experiments
	$(VENV)/bin/ruff format --check mmjax tests configs experiments

format: $(STAMP)
	$(VENV)/bin/ruff check --fix mmjax tests configs experiments
	$(VENV)/bin/ruff format mmjax tests configs experiments

# Two workers fit CI's two cores; the tests are compile-bound, one core each.
TEST_WORKERS ?= 2

test: lint debian-data
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadfile --durations=15

# Rewrites tests/golden/configs.json (every config's parameters, sharding and FLOPs) after an intended model change.
golden: $(STAMP)
	$(PY) tests/golden/regenerate.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
