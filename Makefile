# The two commands of the README. Both do all set-up first (deploy/setup.sh, idempotent);
# `make test` runs the linter and the domain core's type check before the tests (CI calls
# `make test`).
.PHONY: setup demo test lint

setup:
	bash deploy/setup.sh

demo: setup
	.venv/bin/ketenmonitor demo

test: setup lint
	bash tests/run_side_by_side.sh

lint: setup
	.venv/bin/ruff check .
	.venv/bin/mypy
