# The two commands of the README: `make demo` builds the example image, `make test` runs every test.
GO        ?= go
BIN       ?= bin/imgform
FUZZTIME  ?=
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS   := -X main.buildVersion=$(VERSION)

.PHONY: all build deps test unit fuzz e2e drills drills-ci lint demo bench clean
.PHONY: phase-deps phase-lint phase-unit phase-fuzz phase-e2e phase-e2e-ci phase-drills-ci e2e-ci

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/imgform

deps:
	scripts/install-deps.sh

# No build outputs in git (a 69 MB binary was committed once): no tracked file over 1 MB outside a testdata/
# folder, no tracked executable anywhere (scripts/lint-files.sh); scripts/lint-test.sh checks those rules.
lint:
	@scripts/lint-files.sh
	@scripts/lint-test.sh
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...
	$(GO) run ./cmd/imgform fmt -check -recursive examples
	$(GO) run ./cmd/imgform validate -quiet examples/*/

# Unit and guest tests of each package (the steps/qemu and steps/ssh guest tests boot real TCG guests).
unit:
	$(GO) test -race -count=1 -timeout 20m $$($(GO) list ./... | grep -v /e2e)

# Builds the example for real against the test image and boots the result (about 30 minutes under TCG).
e2e:
	$(GO) test -count=1 -timeout 80m -v ./e2e

# Failure drills (docs/reliability.md): a damaged cache, concurrent applies, secrets, a full output disk,
# configuration errors and kill -9 at random moments of real builds. Needs root (tmpfs, loop devices).
# Run before each release (about 45 minutes under TCG).
drills:
	$(GO) test -tags drills -count=1 -timeout 90m -v -run Drill ./e2e

# The drills that fit in CI (about 20 minutes under TCG): all but the kill -9 drill (drill 1, 26 minutes).
# CI runs them beside the end-to-end tests (make test); the resume test (7 minutes) goes with them, so that
# the two halves take about as long (e2e-ci leaves it out).
drills-ci:
	$(GO) test -tags drills -count=1 -timeout 60m -v -run 'TestDrill[0234567]|TestResumeFromSavedState' ./e2e

e2e-ci:
	$(GO) test -count=1 -timeout 80m -v -skip TestResumeFromSavedState ./e2e

# A short fuzz run of each parser: every Fuzz function of the repository (found in the *_test.go files), one
# after the other, each in its own `go test -fuzz` (Go fuzzes one target at a time). FUZZTIME is the time of
# each target. Left empty, FuzzLoad (the configuration parser) gets 20s and every other target 3s: with
# about 2 s to build and start each, under 2 minutes for the 16 targets of today, which keeps .ci/run inside
# its budget (7s each took 181 s on two busy cores, 2026-11-30). make fuzz FUZZTIME=10m runs each target for
# 10 minutes; run that before a release. No vet here: lint
# vets. A target that fails does not stop the others; its failing input is written under the package's
# testdata/fuzz/<target>/, to be committed with the fix as a regression seed.
fuzz:
	@failed=; for file in $$(grep -rl --include='*_test.go' '^func Fuzz' cmd internal | sort); do \
		pkg=./$$(dirname "$$file"); \
		for target in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$$file"); do \
			fuzztime='$(FUZZTIME)'; \
			if [ -z "$$fuzztime" ]; then if [ "$$target" = FuzzLoad ]; then fuzztime=20s; else fuzztime=3s; fi; fi; \
			echo "== $$target ($$pkg, $$fuzztime)"; \
			scripts/fuzz-one.sh "$(GO)" "$$pkg" "$$target" "$$fuzztime" || \
				failed="$$failed $$target"; \
		done; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: failed:$$failed"; exit 1; fi

# The end-to-end test and the drills boot TCG guests that leave a core idle much of the time (cloud-init,
# SSH retries, DHCP): side by side they took 31.5 min (2026-11-30), one after the other about 38. Their -v
# lines interleave (each line is written whole); make's -O would hold them back until each test ends.
# Each phase runs in scripts/phase.sh, which reports its wall time and, when IMGFORM_PHASE_LOG names a file,
# appends a line to it; .ci/run prints that file as a table (one line per phase and one for the -j2 block).
test: phase-deps phase-lint phase-unit phase-fuzz
	@scripts/phase.sh e2e+drills-ci $(MAKE) --no-print-directory -j2 phase-e2e-ci phase-drills-ci

phase-deps phase-lint phase-unit phase-fuzz phase-e2e phase-e2e-ci phase-drills-ci:
	@scripts/phase.sh $(@:phase-%=%) $(MAKE) --no-print-directory $(@:phase-%=%)

# Builds the example image. This machine cannot download the official Debian image, so the source is a
# Debian 12 cloud-style image built from Debian packages (cached outside the repository).
demo: deps build
	img=$$(scripts/build-test-image.sh) && \
	$(BIN) apply -var "source_url=$$img" -var "source_checksum=file:$$img.SHA256SUMS" examples/debian-12-base

# Measures full, no-op and incremental builds of the examples, their cache footprint and the export's zstd
# against the zstd tool, and prints the figures of docs/benchmarks.md (about 30 minutes under TCG).
# BENCHFLAGS passes options to scripts/bench, e.g. BENCHFLAGS='-out /tmp/bench.md -keep'.
bench: deps build
	img=$$(scripts/build-test-image.sh) && \
	$(GO) run ./scripts/bench -imgform $(BIN) -source "$$img" $(BENCHFLAGS)

clean:
	rm -rf bin
