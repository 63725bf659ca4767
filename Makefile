# The README's two commands: `make demo` and `make test`. Each installs only what it needs
# (scripts/setup-tools.sh: demo = nats-server; test = + S3 server and archive readers).
CARGO ?= cargo

.PHONY: setup setup-demo demo test lint bench fmt

setup-demo:
	@./scripts/setup-tools.sh demo

setup:
	@./scripts/setup-tools.sh test

demo: setup-demo
	$(CARGO) run --quiet --bin stator -- demo

# Validates with the binary the tests just built: `cargo run` would build it again with a
# non-test build's features (dev-dependencies turn on more of ahash, serde_json,
# regex-automata, num-bigint), rebuilding the DataFusion stack, about 8 minutes on 2 cores.
test: setup
	$(CARGO) test --workspace --all-targets --no-fail-fast
	$${CARGO_TARGET_DIR:-target}/debug/stator validate pipelines/*.toml

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Every benchmark; each rewrites its results section of docs/BENCHMARKS.md.
bench:
	@./scripts/setup-tools.sh bench
	STATOR_BENCH_WRITE=1 $(CARGO) bench --bench ingest
	STATOR_BENCH_WRITE=1 $(CARGO) bench --bench service
	STATOR_BENCH_WRITE=1 $(CARGO) bench --bench filters
	STATOR_BENCH_WRITE=1 $(CARGO) bench --bench scale
	STATOR_BENCH_WRITE=1 $(CARGO) bench --bench analysis
	STATOR_BENCH_WRITE=1 $(CARGO) bench --bench archive
	$(CARGO) bench --bench kernels
