# The README's two commands. All the set-up is in scripts/bootstrap (plain sh, usable without
# make: `sh scripts/bootstrap demo`, `sh scripts/bootstrap test -k cache`).
#
#   make demo                     the main job: sshpin against a throwaway sshd, with real ssh
#   make test                     the whole test suite
#   make test ARGS='-k undo -x'   arguments for pytest
#   make clean                    remove the virtualenv (.venv)

ARGS ?=
PYTHON ?= python3

.PHONY: demo test clean

demo:
	@PYTHON='$(PYTHON)' sh scripts/bootstrap demo

test:
	@PYTHON='$(PYTHON)' sh scripts/bootstrap test $(ARGS)

clean:
	rm -rf .venv
