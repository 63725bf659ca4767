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

bench: setup bench-python
	$(CARGO) bench --bench ingest
	$(CARGO) bench --bench kernels
	$(CARGO) bench --bench analysis

# numpy/scipy for the Python comparison in `cargo bench --bench analysis`.
bench-python:
	PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --target .tools/py-bench numpy scipy
