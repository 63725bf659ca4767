# The README's two commands: `make demo` and `make test`. Both install what they need.
CARGO ?= cargo

.PHONY: setup demo test lint bench fmt

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

bench: setup
	$(CARGO) bench --bench ingest
