# kspm: the two commands are `make run` and `make test`. Everything else is a helper.
SHELL := /bin/bash
BUILD ?= build
RELEASE_BUILD ?= build-release
JOBS ?= $(shell nproc)

.PHONY: all deps configure build run test bench format format-check clean

all: build

deps:
	@bash scripts/deps.sh

configure: deps
	@[ -f $(BUILD)/build.ninja ] || cmake --preset dev >/dev/null

build: configure
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	@bash scripts/demo.sh

test: build
	@ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

bench: deps
	@[ -f $(RELEASE_BUILD)/build.ninja ] || cmake --preset release >/dev/null
	@cmake --build $(RELEASE_BUILD) -j $(JOBS)
	@bash scripts/bench.sh $(RELEASE_BUILD)

format:
	@git ls-files --cached --others --exclude-standard '*.cc' '*.h' '*.proto' | xargs clang-format-14 -i

format-check:
	@git ls-files '*.cc' '*.h' '*.proto' | xargs clang-format-14 --dry-run --Werror

clean:
	rm -rf $(BUILD) $(RELEASE_BUILD) var
