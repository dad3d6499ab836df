# Tandem build, run, test and benchmark entry points.
# `make run` and `make test` are the two commands of the README.

GO        ?= go
# EventStore-Client-Go and protoactor-go's cluster both register a protobuf
# file named gossip.proto; without this a binary linking both panics at start.
LDFLAGS   := -X google.golang.org/protobuf/reflect/protoregistry.conflictPolicy=warn
export GOLANG_PROTOBUF_REGISTRATION_CONFLICT := warn
GOFLAGS_BUILD := -ldflags "$(LDFLAGS)"
BIN       := bin/tandem
CONFIG    ?= examples/tandem.yaml
# Packages with concurrency run under the race detector.
RACE_PKGS := ./events/... ./actors/... ./gateway/... ./projections/... ./internal/...

.PHONY: all build run test test-unit test-e2e deps-test proto vet fmt-check \
        bench-store bench-register bench-calls bench-replay clean

all: build

build:
	$(GO) build $(GOFLAGS_BUILD) -o $(BIN) ./cmd/tandem

run: build
	./$(BIN) serve --config $(CONFIG)

# deps-test installs the real peers the tests drive, from Debian's packages,
# when they are missing and we are root; otherwise it fails naming them.
deps-test:
	@./test/deps.sh sipp:sip-tester kamailio:kamailio pg_ctlcluster:postgresql

proto: bin/protoc-gen-go
	protoc -I events -I /usr/include --plugin=protoc-gen-go=bin/protoc-gen-go \
		--go_out=. --go_opt=module=github.com/tandemswitch/tandem events/eventpb/*.proto

bin/protoc-gen-go: go.mod
	$(GO) build -o $@ google.golang.org/protobuf/cmd/protoc-gen-go

vet:
	$(GO) vet $(GOFLAGS_BUILD) ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

test: deps-test fmt-check vet test-unit test-e2e

test-unit:
	$(GO) test $(GOFLAGS_BUILD) -race -count=1 $(RACE_PKGS)
	$(GO) test $(GOFLAGS_BUILD) -count=1 ./cmd/...

test-e2e: build
	$(GO) test $(GOFLAGS_BUILD) -count=1 -timeout 20m ./test/...

bench-store:
	$(GO) run $(GOFLAGS_BUILD) ./test/bench/storebench

bench-register: build
	@./test/deps.sh sipp:sip-tester kamailio:kamailio
	$(GO) run $(GOFLAGS_BUILD) ./test/bench/regbench

bench-calls: build
	@./test/deps.sh sipp:sip-tester kamailio:kamailio
	$(GO) run $(GOFLAGS_BUILD) ./test/bench/callbench

bench-replay:
	$(GO) run $(GOFLAGS_BUILD) ./test/bench/replaybench

clean:
	rm -rf bin
