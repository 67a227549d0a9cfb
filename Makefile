# tensord: `make run` and `make test` work on a fresh Debian 12 machine as root
# (or with sudo): they install what is missing, build, then run or test.

SHELL := /bin/bash
BUILD_DIR ?= build
VENV ?= .venv
PYTHON ?= python3
JOBS ?= $(shell nproc)
ARGS ?=

# Debian packages the build and tests need.
APT_PACKAGES := build-essential cmake pkg-config \
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev libabsl-dev \
  libgtest-dev prometheus-cpp-dev libopenblas-dev python3 python3-venv python3-dev ccache
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps build venv run test test-cpp test-python bench bench-ops clean

all: build

# Installs the Debian packages of $(1) that are missing; `apt-get update`
# runs only then.
install_missing = missing=$$(for p in $(1); do \
    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; \
  done); \
  if [ -n "$$missing" ]; then \
    echo "installing:" $$missing; \
    $(SUDO) apt-get update -qq && \
    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
  fi

deps:
	@$(call install_missing,$(APT_PACKAGES))

# ccache keeps compiled objects across clean clones (CI, fresh checkouts):
# each build variant rebuilds only what changed.
CMAKE_LAUNCHER = -DCMAKE_CXX_COMPILER_LAUNCHER=ccache

$(BUILD_DIR)/Makefile: CMakeLists.txt | deps
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_LAUNCHER)

build: deps $(BUILD_DIR)/Makefile
	cmake --build $(BUILD_DIR) -j $(JOBS)

# The client, its generated stubs and the test tools, in a venv under the repo.
$(VENV)/.installed: client_py/pyproject.toml client_py/setup.py proto/tensord/v1/tensord.proto \
    tests/requirements.txt | deps
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e 'client_py[test]' -r tests/requirements.txt
	touch $@

venv: $(VENV)/.installed

run: build
	$(BUILD_DIR)/tensord $(ARGS)

test-cpp: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)

# pytest exits 5 when it collected no tests: that is a failure here too.
test-python: build venv
	$(VENV)/bin/python -m pytest tests/e2e -q -p no:cacheprovider; \
	  code=$$?; [ $$code -eq 5 ] && echo "pytest collected no tests" >&2; exit $$code

# The load test (tests/load/): 32 client processes mixing work on one server,
# checked against NumPy; the server's resident memory must come back after.
# TENSORD_LOAD_OPS sets the operations per client (default 1000).
.PHONY: test-load
test-load: build venv
	$(VENV)/bin/python -m pytest tests/load -q -p no:cacheprovider; \
	  code=$$?; [ $$code -eq 5 ] && echo "pytest collected no tests" >&2; exit $$code

test: test-cpp test-python

bench: build venv
	$(VENV)/bin/python bench/transfer.py

# Op overhead, pipelining, fairness, matmul and the training loop. Set
# BENCH_PYTHON to an interpreter that has torch (and the client) for the
# PyTorch baselines.
BENCH_PYTHON ?= $(VENV)/bin/python
bench-ops: build venv
	$(BENCH_PYTHON) bench/ops.py

clean:
	rm -rf $(BUILD_DIR)

# Builds the container image with podman and checks it with the real client
# (scripts/image-test.sh says what it checks; needs root, installs podman).
.PHONY: image-test
image-test: venv
	scripts/image-test.sh

# The PyTorch parity suite (tests/parity/): tensord against real PyTorch,
# which runs in a venv of its own.
PARITY_VENV ?= .venv-parity
$(PARITY_VENV)/.installed: tests/parity/requirements.txt | deps
	$(PYTHON) -m venv $(PARITY_VENV)
	$(PARITY_VENV)/bin/pip install -q --upgrade pip
	$(PARITY_VENV)/bin/pip install -q -r tests/parity/requirements.txt
	touch $@

.PHONY: parity-venv test-parity
parity-venv: $(PARITY_VENV)/.installed

test-parity: build venv parity-venv
	PARITY_TORCH_PYTHON=$(abspath $(PARITY_VENV))/bin/python $(VENV)/bin/python -m pytest tests/parity -q \
	  -p no:cacheprovider; \
	  code=$$?; [ $$code -eq 5 ] && echo "pytest collected no tests" >&2; exit $$code

# ---- Sanitizers and fuzzing ----------------------------------------------------
# Each variant is one clang build directory: build-asan holds tensord, the
# unit tests and the fuzz targets with AddressSanitizer and
# UndefinedBehaviorSanitizer; build-tsan holds tensord and the unit tests
# with ThreadSanitizer. Every report fails the run: the sanitizers write
# them under <build dir>/reports, and scripts/sanitizer-reports.sh fails
# when that directory is not empty afterwards.
SANITIZER_PACKAGES := clang-14 libclang-rt-14-dev curl patch xz-utils
SANITIZER_CXX ?= clang++-14
# -O1 with line tables: what the sanitizers recommend, and about half the
# compile time of -O2 -g on this code.
SANITIZER_CMAKE = -DCMAKE_CXX_COMPILER=$(SANITIZER_CXX) -DCMAKE_BUILD_TYPE=Sanitize $(CMAKE_LAUNCHER) \
  -DCMAKE_CXX_FLAGS_SANITIZE="-O1 -gline-tables-only"
ASAN_DIR ?= build-asan
TSAN_DIR ?= build-tsan
FUZZ_SECONDS ?= 60
FUZZERS := upload download view execute optimizer
ASAN_REPORTS = $(abspath $(ASAN_DIR))/reports
TSAN_REPORTS = $(abspath $(TSAN_DIR))/reports
ASAN_ENV = ASAN_OPTIONS=log_path=$(ASAN_REPORTS)/asan:detect_stack_use_after_return=1:strict_string_checks=1 \
  UBSAN_OPTIONS=log_path=$(ASAN_REPORTS)/ubsan:print_stacktrace=1 \
  LSAN_OPTIONS=suppressions=$(abspath tests/sanitizers/lsan.supp):print_suppressions=0
TSAN_ENV = TSAN_OPTIONS=log_path=$(TSAN_REPORTS)/tsan:second_deadlock_stack=1:suppressions=$(abspath tests/sanitizers/tsan.supp)

# What runs under ThreadSanitizer: the unit tests (the scheduler, sessions,
# autograd and GEMM stress tests among them) and the end-to-end tests of
# concurrency, pipelining and the execution engine. The rest of the e2e
# suite exercises no more concurrency than these and runs under ASan.
TSAN_E2E ?= tests/e2e/test_concurrency.py tests/e2e/test_execution.py tests/e2e/test_sessions.py

.PHONY: deps-sanitizers build-asan build-tsan test-asan test-tsan fuzz

deps-sanitizers: deps
	@$(call install_missing,$(SANITIZER_PACKAGES))

$(ASAN_DIR)/Makefile: CMakeLists.txt | deps-sanitizers
	cmake -S . -B $(ASAN_DIR) $(SANITIZER_CMAKE) -DTENSORD_SANITIZE=address,undefined -DTENSORD_FUZZ=ON

build-asan: deps-sanitizers $(ASAN_DIR)/Makefile
	cmake --build $(ASAN_DIR) -j $(JOBS)

# The unit tests and the whole end-to-end suite against the ASan+UBSan
# binary (tests that measure the server's resident memory skip: under ASan
# it is mostly shadow memory).
test-asan: build-asan venv
	rm -rf $(ASAN_REPORTS) && mkdir -p $(ASAN_REPORTS)
	$(ASAN_ENV) $(ASAN_DIR)/tensord_unit_tests --gtest_brief=1
	$(ASAN_ENV) TENSORD_BIN=$(abspath $(ASAN_DIR))/tensord TENSORD_SANITIZER=address \
	  $(VENV)/bin/python -m pytest tests/e2e -q -p no:cacheprovider; \
	  code=$$?; [ $$code -eq 5 ] && echo "pytest collected no tests" >&2; exit $$code
	scripts/sanitizer-reports.sh $(ASAN_REPORTS)

$(TSAN_DIR)/absl-src/.unpacked: | deps-sanitizers
	scripts/fetch-absl-source.sh $(TSAN_DIR)/absl-src

$(TSAN_DIR)/Makefile: CMakeLists.txt | deps-sanitizers $(TSAN_DIR)/absl-src/.unpacked
	cmake -S . -B $(TSAN_DIR) $(SANITIZER_CMAKE) -DTENSORD_SANITIZE=thread \
	  -DTENSORD_ABSL_SOURCE=$(abspath $(TSAN_DIR))/absl-src

build-tsan: deps-sanitizers $(TSAN_DIR)/Makefile
	cmake --build $(TSAN_DIR) -j $(JOBS) --target tensord tensord_unit_tests

test-tsan: build-tsan venv
	rm -rf $(TSAN_REPORTS) && mkdir -p $(TSAN_REPORTS)
	$(TSAN_ENV) $(TSAN_DIR)/tensord_unit_tests --gtest_brief=1
	$(TSAN_ENV) TENSORD_BIN=$(abspath $(TSAN_DIR))/tensord TENSORD_SANITIZER=thread \
	  $(VENV)/bin/python -m pytest $(TSAN_E2E) -q -p no:cacheprovider; \
	  code=$$?; [ $$code -eq 5 ] && echo "pytest collected no tests" >&2; exit $$code
	scripts/sanitizer-reports.sh $(TSAN_REPORTS)

# Each libFuzzer target for FUZZ_SECONDS, from the seed corpus in
# fuzz/corpus/<target> (new inputs go to $(ASAN_DIR)/fuzz/corpus-<target>);
# prints the executions per target. A crash, a leak, a sanitizer report or
# a harness check (budget not back to zero) fails it, and leaves the input
# in $(ASAN_DIR)/fuzz/.
fuzz: build-asan
	rm -rf $(ASAN_REPORTS) && mkdir -p $(ASAN_REPORTS)
	FUZZ_SECONDS=$(FUZZ_SECONDS) $(ASAN_ENV) scripts/fuzz.sh $(ASAN_DIR)/fuzz $(FUZZERS)
	scripts/sanitizer-reports.sh $(ASAN_REPORTS)
