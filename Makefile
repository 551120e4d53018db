# alloy — top-level commands. `make demo` and `make test` work on a fresh
# Debian 12 machine: they install any missing Debian package first.
BUILD      ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_ARGS ?=

# Everything alloy needs from Debian (build, tests, demo, bench).
DEBIAN_PACKAGES := cmake make g++ libeigen3-dev libcli11-dev catch2 \
                   libyaml-cpp-dev nlohmann-json3-dev time

# Wanted by the HTML report tests (headless Chromium); installed when possible,
# and those tests are skipped with a message where it cannot be.
TEST_PACKAGES := chromium
TORCH_TEST_PACKAGES := python3-torch

.PHONY: all deps test-deps build test test-asan test-tsan demo bench clean help

# ThreadSanitizer build: OpenMP off, so kernels/parallel.cc runs its loops on
# std::threads, whose synchronization TSan sees (it sees neither libgomp's nor
# libomp's dynamic schedule). The excluded labels' tests only drive external
# programs (headless Chromium, npm packages, llama.cpp).
TSAN_OPTIONS_ALLOY := halt_on_error=1 second_deadlock_stack=1
TSAN_EXCLUDE_LABELS ?= chromium|npm|llama

# libFuzzer targets (tests/fuzz/, docs/RELIABILITY.md): clang, separate build dir.
FUZZ_BUILD   ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
FUZZ_PACKAGES := clang libclang-rt-dev
.PHONY: fuzz-deps fuzz-build fuzz fuzz-smoke fuzz-regress fuzz-ci

all: build

help:
	@echo "make deps       install missing Debian packages (apt-get; root or sudo)"
	@echo "make build      Release build into $(BUILD)/"
	@echo "make test       deps + build + the whole test suite (ctest; installs chromium and python3-torch for the HTML and .bin tests when it can; the GGUF reader tests fetch npm packages)"
	@echo "make test-asan  the suite under AddressSanitizer + UBSan ($(ASAN_BUILD)/)"
	@echo "make test-tsan  the suite under ThreadSanitizer, loops on std::threads ($(TSAN_BUILD)/)"
	@echo "make demo       deps + build + tiny example models + example runs"
	@echo "make bench      benchmarks; figures go to docs/PERFORMANCE.md"
	@echo "make fuzz       libFuzzer targets (clang, $(FUZZ_BUILD)/), FUZZ_SECONDS=$(FUZZ_SECONDS) each"
	@echo "make fuzz-smoke the fuzz targets for 10 s each"
	@echo "make fuzz-regress  replay tests/fuzz/regressions/ and the committed seeds once"
	@echo "make fuzz-ci    fuzz-regress, then every target for 60 s (run by .ci/run)"

deps:
	@missing=""; \
	for p in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "deps: all Debian packages present"; fi

test-deps:
	@if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	if ! command -v chromium >/dev/null 2>&1; then \
	  echo "test-deps: installing chromium (for the HTML report tests)"; \
	  ( $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	    --no-install-recommends $(TEST_PACKAGES) ) >/dev/null 2>&1 || \
	  echo "test-deps: chromium could not be installed; the HTML rendering tests will be skipped"; \
	fi; \
	if ! /usr/bin/python3 -c "import torch" >/dev/null 2>&1; then \
	  echo "test-deps: installing python3-torch (torch.save files for the .bin reader tests)"; \
	  ( $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	    --no-install-recommends $(TORCH_TEST_PACKAGES) ) >/dev/null 2>&1 || \
	  echo "test-deps: python3-torch could not be installed; the torch.save round trip will be skipped"; \
	fi

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

# Runs every test; prints one 'N passed, N failed' line; fails if any failed.
test: build test-deps
	@scripts/run_ctest.sh $(BUILD) $(JOBS)

test-asan: deps test-deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DALLOY_SANITIZE=address,undefined $(CMAKE_ARGS) >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
	  scripts/run_ctest.sh $(ASAN_BUILD) $(JOBS)

test-tsan: deps test-deps
	@cmake -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DALLOY_SANITIZE=thread -DALLOY_OPENMP=OFF $(CMAKE_ARGS) >/dev/null
	@cmake --build $(TSAN_BUILD) -j $(JOBS)
	@TSAN_OPTIONS="$(TSAN_OPTIONS_ALLOY)" scripts/run_ctest.sh $(TSAN_BUILD) $(JOBS) \
	  -LE '$(TSAN_EXCLUDE_LABELS)'

demo: build
	@scripts/demo.sh $(BUILD)

bench: build
	@bench/run.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) demo-out

# ---- fuzzing (opt-in; not part of build/test) ----
fuzz-deps: deps
	@missing=""; \
	for p in $(FUZZ_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "fuzz-deps: installing$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  ( $$SUDO apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing ) || \
	  echo "fuzz-deps: could not install$$missing"; \
	else echo "fuzz-deps: clang present"; fi

fuzz-build: fuzz-deps
	@CC=clang CXX=clang++ cmake -S . -B $(FUZZ_BUILD) -DALLOY_FUZZ=ON -DALLOY_BUILD_TESTS=OFF \
	  -DALLOY_BUILD_EXAMPLES=OFF -DALLOY_OPENMP=OFF -DCMAKE_BUILD_TYPE=Debug \
	  "-DCMAKE_CXX_FLAGS_DEBUG=-O1 -g" >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzz_all

fuzz: fuzz-build
	@tests/fuzz/run_fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-smoke: fuzz-build
	@tests/fuzz/run_fuzz.sh $(FUZZ_BUILD) 10 $(FUZZ_TARGETS)

fuzz-regress: fuzz-build
	@tests/fuzz/replay.sh $(FUZZ_BUILD) $(FUZZ_TARGETS)

# What CI runs (.ci/run): the regressions replayed, then every target for 60 s
# (ASan + UBSan) from the generated and committed seeds.
fuzz-ci: fuzz-build
	@tests/fuzz/replay.sh $(FUZZ_BUILD)
	@tests/fuzz/run_fuzz.sh $(FUZZ_BUILD) 60
