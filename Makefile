# The two commands of the README. Both do all set-up first (deploy/setup.sh, idempotent);
# `make test` runs the linter before the tests (CI calls `make test`).
.PHONY: setup demo test lint

# Two pytest-xdist workers: most integration time is spent waiting on servers (tests/conftest.py).
TEST_WORKERS ?= 2

setup:
	bash deploy/setup.sh

demo: setup
	.venv/bin/ketenmonitor demo

test: setup lint
	.venv/bin/pytest -n $(TEST_WORKERS) --dist loadgroup

lint: setup
	.venv/bin/ruff check .
