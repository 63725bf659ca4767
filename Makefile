# The README's two commands: `make demo` and `make test`. Both install what they need.
CARGO ?= cargo

.PHONY: setup demo test lint bench bench-python fmt

setup:
	./scripts/setup-tools.sh

demo: setup
	$(CARGO) run --quiet --bin stator -- demo

test: setup
	$(CARGO) test --workspace --all-targets --no-fail-fast
	$(CARGO) run --quiet --bin stator -- validate pipelines/*.toml

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Every benchmark; each rewrites its results section of docs/BENCHMARKS.md.
bench: setup bench-python
	STATOR_BENCH_WRITE=1 $(CARGO) bench --bench ingest
	STATOR_BENCH_WRITE=1 $(CARGO) bench --bench service
	STATOR_BENCH_WRITE=1 $(CARGO) bench --bench filters
	STATOR_BENCH_WRITE=1 $(CARGO) bench --bench analysis
	STATOR_BENCH_WRITE=1 $(CARGO) bench --bench archive
	$(CARGO) bench --bench kernels

# numpy/scipy for the Python comparison in `cargo bench --bench analysis`.
bench-python:
	PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --target .tools/py-bench numpy scipy
