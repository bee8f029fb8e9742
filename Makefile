# gov-topics: staged training as file targets. `make help` lists the targets.
# Each stage's output is a file under build/; an unchanged stage is skipped.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TOPICS := $(BIN)/topics
EXP    ?= experiments/default.yaml
NAME   := $(shell sed -n 's/^name: *//p' $(EXP) 2>/dev/null | head -1)
B      := build/$(NAME)
SAMPLE ?= seeds/raw/000_ba6c15fe868e3295.txt
ARGS   := --exp $(EXP)

RAW       := $(wildcard seeds/raw/*.txt seeds/raw/*.md) seeds/raw.sha256
WRITTEN   := $(wildcard seeds/extra/*.jsonl)
LEXICON   := seeds/themes.yaml seeds/userdict.txt seeds/stopwords.txt
SRC        = $(wildcard pipeline/*.py)

.PHONY: help all install ingest segment features train evaluate register predict-sample \
        labels test lint ui sweep bench clean

help: ## show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

all: install register predict-sample ## set up .venv, run every stage on seeds/, register a model, predict a sample

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/python -m compileall -q pipeline  # bytecode up front: a faster first `topics predict`
	@touch $@

install: $(VENV)/.installed ## create .venv and install the project with its dev extras

build/units.jsonl: $(RAW) pipeline/ingest.py pipeline/textio.py | $(VENV)/.installed
	$(TOPICS) ingest $(ARGS)

ingest: build/units.jsonl ## stage 1: raw documents -> clean paragraph units

$(B)/segmented.jsonl: build/units.jsonl seeds/gold.jsonl $(WRITTEN) $(LEXICON) $(EXP) pipeline/segment.py
	@mkdir -p $(B)
	$(TOPICS) segment $(ARGS)

segment: $(B)/segmented.jsonl ## stage 2: jieba segmentation (all cores)

$(B)/features.joblib: $(B)/segmented.jsonl pipeline/features.py
	$(TOPICS) features $(ARGS)

features: $(B)/features.joblib ## stage 3: TF-IDF and lexicon features, vocabulary summary

$(B)/model.joblib: $(B)/features.joblib pipeline/train.py
	$(TOPICS) train $(ARGS)

train: $(B)/model.joblib ## stage 4: fit the classifier (EXP=experiments/<name>.yaml)

$(B)/evaluation.json: $(B)/segmented.jsonl pipeline/evaluate.py pipeline/train.py pipeline/features.py pipeline/report.py
	$(TOPICS) evaluate $(ARGS)

evaluate: $(B)/evaluation.json ## stage 5: grouped cross-validation on the seed units (+ report.html)

$(B)/registered.json: $(B)/model.joblib $(B)/evaluation.json
	$(TOPICS) register $(ARGS)

register: $(B)/registered.json ## stage 6: save a new model version under models/, log to MLflow
	@echo "model: $$(tr -d ' \n' < $<) (stages re-run only when their inputs change; up-to-date stages were skipped)"

EXPERIMENTS := $(wildcard experiments/*.yaml)

sweep: $(VENV)/.installed ## train, evaluate and register every experiments/*.yaml; compare in MLflow (make ui)
	@for f in $(EXPERIMENTS); do echo "== $$f"; $(MAKE) --no-print-directory register EXP=$$f || exit 1; done
	$(TOPICS) models list

bench: $(VENV)/.installed ## measure prediction speed and memory: bench/results.json, bench/README.md
	$(MAKE) --no-print-directory train
	$(MAKE) --no-print-directory train EXP=experiments/jieba.yaml
	$(BIN)/python bench/bench.py

predict-sample: register ## predict the themes of a seed document with the model just registered
	$(TOPICS) predict $(SAMPLE) --model "gov-topics:$$(sed -n 's/.*"version": *\([0-9]*\).*/\1/p' $(B)/registered.json)"

labels: build/units.jsonl ## check the gold labels
	$(TOPICS) labels check $(ARGS)

lint: $(VENV)/.installed ## ruff check, ruff format --check, mypy
	$(BIN)/ruff check pipeline tests bench
	$(BIN)/ruff format --check pipeline tests bench
	$(BIN)/mypy pipeline/

test: $(VENV)/.installed lint labels ## lint, check labels and run the test suite
	$(BIN)/pytest -q

ui: $(VENV)/.installed ## open the MLflow UI on the local store (http://127.0.0.1:5000)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/experiments/mlflow.db \
	  --default-artifact-root $(CURDIR)/experiments/mlartifacts --host 127.0.0.1 --port 5000

clean: ## remove stage outputs (models and experiments are kept)
	rm -rf build
