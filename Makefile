# usertrap build and test entry points. `make` builds the library and the
# `usertrap` command, `make test` builds everything (C test programs included)
# and runs every test, `make lint` checks formatting and lints.
CARGO   ?= cargo
CC      ?= gcc
CFLAGS  ?= -O2 -g -Wall -Wextra -Werror=implicit-function-declaration
LIB     := target/release/libusertrap.so
LAUNCHER := target/release/usertrap-launcher
C_SRC   := $(wildcard c_tests/*.c)
C_BIN   := $(patsubst c_tests/%.c,target/c_tests/%,$(C_SRC))

.PHONY: all lib c-tests test deps lint lint-tools lint-fmt lint-root lint-launcher lint-rust-std demo bench clean FORCE

all: lib

lib: $(LIB) $(LAUNCHER)

# cargo decides what is stale; always ask it.
$(LIB): FORCE
	$(CARGO) build --release

# The launcher (exec under the interposer, static programs): its own cargo
# workspace (launcher/), installed beside the library, where both look for it.
$(LAUNCHER): FORCE
	cd launcher && $(CARGO) build --release
	cp -f target/launcher/release/usertrap-launcher $@.tmp && mv -f $@.tmp $@

c-tests: $(C_BIN) target/c_tests/static_pie_hello

target/c_tests/%: c_tests/%.c $(wildcard c_tests/*.h)
	@mkdir -p target/c_tests
	$(CC) $(CFLAGS) -pthread -o $@ $< -lrt

# c_tests/static_*.c are linked statically (no loader, so no LD_PRELOAD: the
# launcher must bring the library in). The more specific pattern wins.
target/c_tests/static_%: c_tests/static_%.c $(wildcard c_tests/*.h)
	@mkdir -p target/c_tests
	$(CC) $(CFLAGS) -static -pthread -o $@ $<

# static_hello as a static-pie program: ET_DYN without PT_INTERP, as the
# loader is, but it ignores LD_PRELOAD (the launcher must tell them apart).
target/c_tests/static_pie_hello: c_tests/static_hello.c $(wildcard c_tests/*.h)
	@mkdir -p target/c_tests
	$(CC) $(CFLAGS) -static-pie -pthread -o $@ $<

# A program linked with a library of its own (c_tests/lib), found beside it.
target/c_tests/early_ctor_signals: c_tests/early_ctor_signals.c target/c_tests/libearly_ctor.so
	$(CC) $(CFLAGS) -pthread -o $@ $< -Ltarget/c_tests -learly_ctor -Wl,-rpath,'$$ORIGIN' -lrt

target/c_tests/lib%.so: c_tests/lib/%.c
	@mkdir -p target/c_tests
	$(CC) $(CFLAGS) -shared -fPIC -o $@ $<

# 10,000 generated functions: -O2 with debug info takes 20 s, -O0 3 s.
target/c_tests/many_sites: CFLAGS := -O0 -g0 -Wall -Wextra

# Tools the tests drive (real programs run natively and under the library).
deps:
	@./.ci/deps.sh

test: deps lib c-tests
	$(CARGO) test --release

# Format and lint gates for every cargo workspace: the root (library and
# command), the launcher's (launcher/, which also builds the library's
# sources) and tests/data/rust_std (a test program, built offline like
# tests/runtimes.rs does). Every target (tests too); warnings are errors;
# the lints themselves are [workspace.lints] in Cargo.toml and
# launcher/Cargo.toml. `make -k lint` shows every workspace's problems.
RUST_STD := tests/data/rust_std/Cargo.toml
CLIPPY   := clippy --release --all-targets --keep-going

lint: lint-fmt lint-root lint-launcher lint-rust-std

# rustfmt and clippy come with rustup's default profile; a minimal toolchain
# gets them from the Rust distribution server, as rustup got the toolchain.
lint-tools:
	@$(CARGO) fmt --version >/dev/null 2>&1 || rustup component add rustfmt
	@$(CARGO) clippy --version >/dev/null 2>&1 || rustup component add clippy

lint-fmt: lint-tools
	$(CARGO) fmt --all --check
	cd launcher && $(CARGO) fmt --all --check
	$(CARGO) fmt --all --check --manifest-path $(RUST_STD)

lint-root: lint-tools
	$(CARGO) $(CLIPPY) -- -D warnings

lint-launcher: lint-tools
	cd launcher && $(CARGO) $(CLIPPY) -- -D warnings

lint-rust-std: lint-tools
	$(CARGO) $(CLIPPY) --offline --manifest-path $(RUST_STD) --target-dir target/rust_std -- -D warnings

# The main job on a default workload: `usertrap stat` on a Python program,
# the report of every syscall's latency on stderr.
# python3 may be a wrapper script (pyenv): run the real interpreter directly,
# so the report is python's alone.
PYTHON := $(shell python3 -c 'import sys; print(sys.executable)' 2>/dev/null || echo python3)

demo: lib
	target/release/usertrap stat -- $(PYTHON) -c 'import os, threading; [os.stat("/") for _ in range(10000)]; t = threading.Thread(target=lambda: os.getppid()); t.start(); t.join(); print("python ran under usertrap")'

# Native vs fast path vs slow path vs strace -c, with ratios (not a test).
bench: deps lib target/bench/syscall_loop target/bench/syscall_loop_static target/bench/spawn_loop
	python3 bench/run.py

target/bench/syscall_loop: bench/syscall_loop.c
	@mkdir -p target/bench
	$(CC) -O2 -Wall -Wextra -o $@ $<

# posix_spawn of a program N times: the cost per process.
target/bench/spawn_loop: bench/spawn_loop.c
	@mkdir -p target/bench
	$(CC) -O2 -Wall -Wextra -o $@ $<

# The same, static (run by the launcher); with .eh_frame_hdr so its sites
# can be patched.
target/bench/syscall_loop_static: bench/syscall_loop.c
	@mkdir -p target/bench
	$(CC) -O2 -Wall -Wextra -static -Wl,--eh-frame-hdr -o $@ $<

clean:
	$(CARGO) clean

FORCE:
