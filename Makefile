# The README's two commands: `make train` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install train test test-fast lint format tensorboard clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[dev,sweep,export]"
	touch $(STAMP)

# With a CUDA GPU: the full recipe. Without one: the quickstart preset (measured: 9 min 34 s on an idle
# 2-core CPU; longer beside other work);
# `make train FULL=1` or any ARGS run the full recipe / your command anyway.
train: install
	@if [ -z "$(ARGS)$(FULL)" ] && ! $(PY) -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then \
		echo "no CUDA GPU: training the quickstart preset (SmallCNN on CIFAR-10, 10 epochs; 9 min 34 s measured on an idle 2-core CPU, longer beside other work);"; \
		echo "the full recipe (SmallVGG, 40 epochs, hours on a CPU): make train FULL=1, or python -m train"; \
		$(PY) -m train experiment=quickstart; \
	else \
		$(PY) -m train $(ARGS); \
	fi

test: install
	$(PY) -m pytest $(ARGS)

test-fast: install
	$(PY) -m pytest -m "not real_data" $(ARGS)

lint: install
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests
	$(VENV)/bin/lint-imports --no-cache

format: install
	$(VENV)/bin/ruff check --fix src tests
	$(VENV)/bin/ruff format src tests

tensorboard: install
	$(VENV)/bin/tensorboard --logdir outputs

clean:
	rm -rf outputs .pytest_cache .ruff_cache
