# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
RECIPE := recipes/demo_digits.toml

.PHONY: install demo test clean

install: $(STAMP)

# Reinstall when the requirements or the pins change; the pins make the install reproducible.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test,tune,mlflow,onnx]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/comp demo --dest data/digits
	$(BIN)/comp fit $(RECIPE) --overwrite
	$(BIN)/comp predict --run demo_digits --tta --out submissions/demo_digits.csv
	$(BIN)/comp score submissions/demo_digits.csv --solution data/digits/solution.csv
	$(BIN)/comp cv-report --run demo_digits

test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto

clean:
	rm -rf $(VENV) runs build *.egg-info
