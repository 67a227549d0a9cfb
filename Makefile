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
  libgtest-dev prometheus-cpp-dev libopenblas-dev python3 python3-venv python3-dev
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps build venv run test test-cpp test-python bench bench-ops clean

all: build

# Installs only what is missing; `apt-get update` runs only then.
deps:
	@missing=$$(for p in $(APT_PACKAGES); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; \
	  done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(BUILD_DIR)/Makefile: CMakeLists.txt | deps
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo

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
