# vmig - top-level wrapper around CMake/CTest.
#
#   make demo     install missing deps, build, run a live migration demo
#   make check    install missing deps, build (gcc -Werror, clang
#                 ASan+UBSan+libFuzzer), run every test, lint; ends with
#                 "N passed, N failed"
#   make          build (gcc) into build/
#   make lint     clang-format check + cppcheck
#   make bench    benchmarks (release build)
#   make faults   the whole fault matrix (tests/faults/matrix.py); the
#                 table goes to $(BUILD)/faults.md (docs/faults.md)
#   make install  PREFIX=/usr/local (default), DESTDIR=staging dir
#   make clean

PREFIX ?= /usr/local
DESTDIR ?=
BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

.PHONY: all build deps check demo lint bench install clean fuzz faults

all: build

deps:
	@scripts/install-deps

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	    -DCMAKE_INSTALL_PREFIX=$(PREFIX) $(CMAKE_FLAGS)

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

check: deps
	@scripts/check

demo: deps build
	@$(BUILD)/tools/demo/vmig-demo

lint:
	@scripts/lint all

bench: deps
	@scripts/bench

FAULT_JOBS ?= 2
faults: deps build
	python3 tests/faults/matrix.py --vmig $(BUILD)/agent/vmig \
	    --proxy $(BUILD)/tools/faultproxy/vmig-faultproxy --all \
	    --jobs $(FAULT_JOBS) --table $(BUILD)/faults.md \
	    --json $(BUILD)/faults.json

fuzz: deps
	@VMIG_FUZZ_SECONDS=$${VMIG_FUZZ_SECONDS:-300} scripts/check --fuzz-only

# DESTDIR (staging, as Debian packaging uses it) is honoured; vmig.pc is
# relocatable, so the tree works wherever it lands.
install: build
	DESTDIR=$(DESTDIR) cmake --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf $(BUILD) build-check build-asan build-bench
