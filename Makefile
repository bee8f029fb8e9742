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
# register promotes through the metric gate (the sweep registers without promoting); the gate
# compares versions on a fixed experiment's labelled units (GATE), never the candidate's own
MODEL   ?= gov-topics
GATE    ?= experiments/default.yaml
PROMOTE ?= --promote --gate-exp $(GATE)

# The experiment's data files (its `data:` section: seeds/ for the default) by content: `topics
# inputs` writes one checksum file per stage and rewrites it only when one of its files changed,
# so an experiment on other data has its own stages, and an unchanged stage is still skipped.
IN        := $(B)/inputs
# the code each stage's output depends on (a change re-runs the stage)
P         := pipeline
CORE      := $(P)/config.py $(P)/workspace.py $(P)/stages.py $(P)/themes.py $(P)/errors.py
MODEL_SRC := $(P)/segment.py $(P)/features.py $(P)/classifiers.py $(P)/train.py
START     := $(shell date +%s.%N)

# After a stage target: say for each stage file whether this run made it or skipped it.
define status
	@for f in $(1); do \
	  if [ -e "$$f" ] && awk -v a="$$(stat -c %.9Y "$$f")" -v b="$(START)" 'BEGIN { exit !(a >= b) }'; \
	  then echo "  ran      $$f"; else echo "  skipped  $$f (its inputs did not change)"; fi; \
	done
endef

.PHONY: FORCE help all install ingest segment features train evaluate register predict-sample \
        labels test pytest lint ui sweep bench check-unchanged clean vectors

help: ## show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

all: install register predict-sample ## set up .venv, run every stage on EXP's data (seeds/ by default), register, predict a sample

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	@# uv (from PyPI) installs in parallel from a wheel cache: a minute faster than pip here
	$(BIN)/pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e '.[dev]'
	$(BIN)/python -m compileall -q pipeline  # bytecode up front: a faster first `topics predict`
	@touch $@

install: $(VENV)/.installed ## create .venv and install the project with its dev extras

$(IN)/raw.sha256 $(IN)/labels.sha256 $(IN)/pool.sha256 &: FORCE | $(VENV)/.installed
	@$(TOPICS) inputs $(ARGS)

FORCE:

$(B)/units.jsonl: $(IN)/raw.sha256 $(P)/ingest.py $(P)/paragraphs.py $(P)/textio.py $(CORE)
	$(TOPICS) ingest $(ARGS)

ingest: $(B)/units.jsonl ## stage 1: the experiment's raw documents -> clean paragraph units
	$(call status,$^)

$(B)/segmented.jsonl: $(B)/units.jsonl $(IN)/labels.sha256 $(EXP) $(P)/segment.py $(P)/labels.py $(CORE)
	$(TOPICS) segment $(ARGS)

segment: $(B)/segmented.jsonl ## stage 2: jieba segmentation (all cores)
	$(call status,$(B)/units.jsonl $^)

VECTORS := $(if $(shell grep -s 'vectors: *{enabled: *true' $(EXP)),build/vectors/pool.npz)

build/vectors/pool.npz: $(IN)/pool.sha256 $(P)/vectors.py | $(VENV)/.installed
	$(TOPICS) vectors $(ARGS)

vectors: build/vectors/pool.npz ## word2vec on the unlabelled pool (for experiments with vector features)
	$(call status,$^)

$(B)/vocabulary.json: $(B)/segmented.jsonl $(VECTORS) $(IN)/labels.sha256 $(EXP) $(MODEL_SRC) $(CORE)
	$(TOPICS) features $(ARGS)

features: $(B)/vocabulary.json ## stage 3: TF-IDF and lexicon features: vocabulary summary per theme
	$(call status,$(B)/units.jsonl $(B)/segmented.jsonl $^)

$(B)/model.joblib: $(B)/segmented.jsonl $(VECTORS) $(IN)/labels.sha256 $(EXP) $(MODEL_SRC) $(P)/evidence.py $(CORE)
	$(TOPICS) train $(ARGS)

train: $(B)/model.joblib ## stage 4: fit the end-to-end model (EXP=experiments/<name>.yaml)
	$(call status,$(B)/units.jsonl $(B)/segmented.jsonl $^)

$(B)/evaluation.json: $(B)/segmented.jsonl $(VECTORS) $(IN)/labels.sha256 $(EXP) $(MODEL_SRC) $(P)/evaluate.py $(P)/sources.py $(P)/report.py $(CORE)
	$(TOPICS) evaluate $(ARGS)

evaluate: $(B)/evaluation.json ## stage 5: leave-one-source-out on the real units, seed-unit CV (+ report.html)
	$(call status,$(B)/units.jsonl $(B)/segmented.jsonl $^)

$(B)/registered.json: $(B)/model.joblib $(B)/evaluation.json $(B)/vocabulary.json $(P)/registry.py $(P)/tracking.py $(P)/provenance.py
	$(TOPICS) register $(ARGS) --name $(MODEL) $(PROMOTE)

STAGE_FILES = $(B)/units.jsonl $(B)/segmented.jsonl $(B)/vocabulary.json $(B)/model.joblib \
              $(B)/evaluation.json $(B)/registered.json

register: $(B)/registered.json ## stage 6: save a new model version under models/, log to MLflow
	$(call status,$(STAGE_FILES))
	@echo "model: $$(tr -d ' \n' < $<)"

EXPERIMENTS := $(wildcard experiments/*.yaml)

sweep: $(VENV)/.installed ## evaluate and register every experiments/*.yaml; rank them out of source (experiments/SWEEP.md)
	@for f in $(EXPERIMENTS); do echo "== $$f"; $(MAKE) --no-print-directory register EXP=$$f PROMOTE= || exit 1; done
	$(BIN)/python scripts/sweep_table.py
	$(TOPICS) models list

# Spark: 200 MB against the local engine, then 20 MB, 200 MB, 1 GB (one repeat: ~25 min here)
BENCH_SPARK_ARGS ?= --repeats 1 --sizes 20 200 1000

bench: $(VENV)/.installed ## measure prediction speed and memory: bench/results.json, bench/README.md
	$(MAKE) --no-print-directory train
	$(MAKE) --no-print-directory train EXP=experiments/jieba.yaml
	$(BIN)/python bench/bench.py
	$(BIN)/python bench/bench_queue.py
	$(BIN)/python bench/bench_spark.py $(BENCH_SPARK_ARGS)  # merges "spark" into results.json (Java 17+)

predict-sample: register ## predict the themes of a seed document with the model just registered
	$(TOPICS) predict $(SAMPLE) --model "$(MODEL):$$(sed -n 's/.*"version": *\([0-9]*\).*/\1/p' $(B)/registered.json)"

labels: $(B)/units.jsonl ## check the experiment's labels (gold, written, real) against its units
	$(TOPICS) labels check $(ARGS)

lint: $(VENV)/.installed ## ruff check, ruff format --check, mypy
	$(BIN)/ruff check pipeline tests bench scripts
	$(BIN)/ruff format --check pipeline tests bench scripts
	$(BIN)/mypy pipeline/

check-unchanged: ## retrain the default and check seed predictions and metrics against tests/golden/
	$(MAKE) --no-print-directory train evaluate EXP=experiments/default.yaml
	$(BIN)/python scripts/check_unchanged.py check build/default

# Java 17+ from the system runs Spark's tests (skipped without it; .ci/run requires it)
JAVA       ?= $(if $(JAVA_HOME),$(JAVA_HOME)/bin/java,java)
JAVA_MAJOR  = $(shell $(JAVA) -version 2>&1 | sed -n 's/.* version "\([0-9]*\).*/\1/p' | head -1)

test: $(VENV)/.installed ## lint, check labels, run the tests and doctests (under 5 min from a fresh clone)
	@[ "$(JAVA_MAJOR)" -ge 17 ] 2>/dev/null || echo "make test: no Java 17+ (found: $(or $(JAVA_MAJOR),none)):" \
	  "the Spark tests will be skipped; Debian: apt-get install openjdk-17-jre-headless" >&2
	@# mypy and the label check run beside the tests (two cores): one figure, the slowest
	$(MAKE) --no-print-directory -j2 --output-sync=target lint labels pytest

pytest: $(VENV)/.installed ## the tests and doctests alone (two workers: the suite waits on servers, Spark and subprocesses)
	$(BIN)/pytest -q -n 2 --dist worksteal

ui: $(VENV)/.installed ## open the MLflow UI on the local store: http://127.0.0.1:5000/#/experiments?workflowType=machine_learning
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/experiments/mlflow.db \
	  --default-artifact-root $(CURDIR)/experiments/mlartifacts --host 127.0.0.1 --port 5000

clean: ## remove stage outputs (models and experiments are kept)
	rm -rf build
