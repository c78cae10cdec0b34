# umbra — build, test and benchmark. Every binary is static (CGO_ENABLED=0); the race
# detector needs cgo, so tests run with it on.

GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -s -w -X github.com/umbranet/umbra/internal/version.Version=$(VERSION) -X github.com/umbranet/umbra/internal/version.Commit=$(COMMIT)
GOBUILD   := CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)'
BINARIES  := umbra umbra-agent
# TEST_TIMEOUT bounds the whole test run well inside CI's 90 minutes.
TEST_TIMEOUT ?= 30m

.PHONY: build cross test quickstart bench qemu-test qemu-user-test deps fuzz clean forks

build:
	@mkdir -p bin
	$(GOBUILD) -o bin/umbra ./cmd/umbra
	$(GOBUILD) -o bin/umbra-agent ./cmd/umbra-agent

cross:
	@for t in arm64: armv7:7 armv6:6; do \
		arch=$${t%%:*}; goarm=$${t##*:}; goarch=arm; [ $$arch = arm64 ] && goarch=arm64; \
		mkdir -p bin/linux_$$arch; \
		for b in $(BINARIES); do \
			echo "build bin/linux_$$arch/$$b"; \
			GOOS=linux GOARCH=$$goarch GOARM=$$goarm $(GOBUILD) -o bin/linux_$$arch/$$b ./cmd/$$b || exit 1; \
		done; \
	done

deps:
	bash scripts/setup-deps.sh

test: deps
	bash scripts/forks.sh verify
	$(GO) vet ./...
	CGO_ENABLED=1 $(GO) test -race -timeout $(TEST_TIMEOUT) ./...
	$(MAKE) --no-print-directory qemu-user-test
	$(MAKE) --no-print-directory qemu-test

# qemu-user-test runs the hal, boards and internal tests as arm64 and armv7 binaries under
# qemu-user, and checks that `make cross` is static and that the armv6 agent runs on an ARM1176.
qemu-user-test:
	bash scripts/qemu-user-test.sh

# qemu-test boots the firmware initramfs on an emulated arm64 virt board (Debian's
# cloud-arm64 kernel, fetched with apt and cached in ~/.cache/umbra/qemu); its agent enrolls
# and hosts a service that an agent on the host dials end to end. Needs root.
qemu-test: deps
	bash scripts/qemu-system-test.sh

# forks checks that each in-module fork (third_party/) is upstream plus its patches.
forks:
	bash scripts/forks.sh verify

quickstart: build
	bin/umbra quickstart --dir ./quickstart

bench: build cross
	bash scripts/bench.sh

# fuzz runs every fuzz target for FUZZTIME each (the seed corpora run in `make test`).
FUZZTIME ?= 20s
fuzz:
	bash scripts/fuzz.sh $(FUZZTIME)

clean:
	rm -rf bin
