# Short benchmark run (under five minutes on 2 cores); full runs and results: BENCHMARKS.md.
.PHONY: bench test check install
PY := .venv/bin/python

install:
	scripts/install

test:
	scripts/test

check:
	scripts/check

bench:
	$(PY) -m bench.overhead --quick
	$(PY) bench/router.py --batches 100
	$(PY) -m bench.metering --requests 200 --rounds 3
	$(PY) -m bench.resilience overhead --requests 300
	$(PY) bench/engine.py --tokens 32 --repeat 1
	$(PY) bench/tokens.py --calls 500 --rounds 3
