# The two commands of the README. Both do all set-up first (deploy/setup.sh, idempotent).
.PHONY: setup demo test lint

setup:
	bash deploy/setup.sh

demo: setup
	.venv/bin/ketenmonitor demo

test: setup
	.venv/bin/pytest

lint:
	.venv/bin/ruff check .
