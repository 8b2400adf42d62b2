# unicloud: `make up` runs the platform, `make test` runs the whole suite. Both install what is missing.
SHELL := /bin/bash
ARGS ?=
PYTEST_ARGS ?=
QUICK ?=

.PHONY: up test bench deps prepare clean help

help:
	@echo "make up     install what is missing, build the kernel/stack once, run the platform (ARGS=... for unicloud up)"
	@echo "make test   install what is missing and run the whole test suite (PYTEST_ARGS=... to narrow)"
	@echo "make bench  run the benchmarks side by side with their baselines (QUICK=1 for one round)"

deps:
	@scripts/bootstrap.sh

prepare: deps
	@.venv/bin/unicloud prepare

up: prepare
	@exec .venv/bin/unicloud up $(ARGS)

test: deps
	@.venv/bin/unicloud prepare
	@set +e; .venv/bin/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: treating as a failure" >&2; exit 1; fi; exit $$rc

bench: deps
	@.venv/bin/unicloud prepare
	@.venv/bin/python -m bench $(if $(QUICK),--quick,)

clean:
	rm -rf .venv .pytest_cache
