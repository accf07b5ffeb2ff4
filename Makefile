# segone — developer entry points. `make demo` and `make test` work on a fresh clone:
# each creates .venv (if missing) and installs what it needs first.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-test

.PHONY: demo test lint bench screenshots clean

# Create the virtual environment and install segone with its test tools (re-run when
# pyproject.toml changes).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,bench,spark]"
	touch $(STAMP)

# Run the main job on the embedded default: a fresh project in ./demo-project with a generated
# multichannel store, ingested into DuckDB, and a readable summary.
demo: $(STAMP)
	$(BIN)/segone demo demo-project --customers 20000 --seed 7

# Run the test suite on two workers (whole files per worker). pytest's "no tests collected"
# (exit 5) is turned into an explicit failure so an empty run can never pass by accident.
test: $(STAMP)
	@$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=25; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests - failing on purpose"; exit 1; fi; \
	exit $$rc

# Static checks: ruff (lint + import order) and mypy on the package.
lint: $(STAMP)
	$(BIN)/ruff check segone tests bench
	$(BIN)/ruff format --check segone tests bench
	$(BIN)/mypy

# Benchmarks (about two hours on 2 cores, not part of the test suite); results go to
# BENCHMARKS.md by hand. The identity benchmark reuses the warehouse the ingest one leaves.
bench: $(STAMP)
	$(BIN)/python bench/ingest_bench.py --customers 1000000 --workdir bench/out
	$(BIN)/python bench/identity_bench.py bench/out/bench.duckdb --truth bench/out/sample-1000000-1/truth
	$(BIN)/python bench/rules_bench.py bench/out/identity/identity.duckdb --rules 50
	$(BIN)/python bench/lifecycle_bench.py --customers 20000 --seed 3
	$(BIN)/python bench/febrl_bench.py --baseline
	$(BIN)/python bench/btyd_bench.py --repeats 5 --score-repeats 3 --customers 1000000 --seed 7
	$(BIN)/python bench/churn_bench.py --customers 20000 --seed 3
	OPENBLAS_NUM_THREADS=1 $(BIN)/python bench/nextproducts_bench.py --customers 20000 --seed 7
	$(BIN)/python bench/taste_bench.py --customers 20000 --seed 7
	$(BIN)/python bench/obd_bench.py --crossfit 5
	$(BIN)/python bench/scoring_bench.py --customers 1000000 --seed-people 5000
	$(BIN)/python bench/backfill_bench.py --customers 100000 --weeks 52 --workdir bench/out/backfill

# Regenerate the dashboard screenshots in docs/img/ (one PNG per page) from a demo project,
# served by `segone serve` and taken with Debian's Chromium (apt-get install chromium).
screenshots: $(STAMP)
	$(BIN)/python tests/screenshots.py --out docs/img --customers 2000

clean:
	rm -rf $(VENV) demo-project bench/out .pytest_cache .mypy_cache .ruff_cache
