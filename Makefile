# Two entry points for a newcomer: `make demo` and `make test`. Each sets up .venv on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# torch/torchvision are pinned here (served from local disk on the target machines) and installed in
# the same pip call as the project so that one resolver reconciles every requirement.
TORCH  := torch==2.14.1 torchvision==0.29.1

export WANDB_MODE ?= offline
export WANDB_START_METHOD := thread

.PHONY: demo test test-slow test-all bench reproduce report clean venv
venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install $(TORCH) -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m curvlab.demo --out demo_out

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow" -n auto --dist worksteal

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow -n auto --dist worksteal

test-all: $(STAMP)
	$(PY) -m pytest -q -n auto --dist worksteal

# every paper experiment at full size (resumable: finished jobs are skipped), then results/ and its report
reproduce: $(STAMP)
	@dpkg -s dataset-fashion-mnist >/dev/null 2>&1 || apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
		|| echo "note: Fashion-MNIST needs Debian's dataset-fashion-mnist (or its idx files in data_cache/FashionMNIST/raw/)"
	$(PY) -m curvlab.reproduce

# the claim report from the committed results (no training)
report: $(STAMP)
	$(PY) -m curvlab.report results --out results/report.md

bench: $(STAMP)
	for f in bench/bench_*.py; do $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) outputs multirun demo_out
