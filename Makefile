# crisp - a stateless CRI proxy.
#
#   make              build/crisp
#   make asan         build/asan/crisp (AddressSanitizer + UndefinedBehaviorSanitizer)
#   make SANITIZER=address,undefined BUILD=dir   any sanitizer build
#   make unit         C unit tests (no engine needed)
#   make lint         function lengths (median <= 12, p90 <= 35, none over 60 lines)
#   make fuzz         libFuzzer harnesses (clang), e.g. build/fuzz/fuzz_h1 -max_total_time=60
#   make grpcgo       build/grpcgo/crigo, the grpc-go CRI client of the tests (test/grpcgo)
#   make streamgo     build/grpcgo/streamgo, the exec/attach/port-forward test client (test/streamgo)
#   make check        the whole test suite (installs what it needs; root)
#   make bench        benchmarks against the engine reached directly
#   make run          start crisp in front of a real engine and run a pod through it

BUILD ?= build
GEN := $(BUILD)/gen
SANITIZER ?=
CC ?= cc
PKG_CONFIG ?= pkg-config
PKGS := libnghttp2 libprotobuf-c libevent openssl libcjson zlib
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo 0.1.0)

CFLAGS ?= -O2 -g
WARN := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -Wformat=2 -Wno-format-nonliteral
ALL_CFLAGS := -std=gnu11 -Ulinux $(CFLAGS) -Iinclude -Isrc -I$(GEN) $(shell $(PKG_CONFIG) --cflags $(PKGS)) \
	-D_FORTIFY_SOURCE=2 -fstack-protector-strong
# libwslay (WebSocket framing, the streaming server) ships no pkg-config file
LIBS := $(shell $(PKG_CONFIG) --libs $(PKGS)) -lwslay
LDFLAGS ?=
ifneq ($(SANITIZER),)
ALL_CFLAGS += -fsanitize=$(SANITIZER) -fno-omit-frame-pointer -fno-sanitize-recover=all -O1
LDFLAGS += -fsanitize=$(SANITIZER)
endif

# src/<layer>/*.c (docs/architecture.md); private headers sit beside their .c;
# src/ctl/ is crispctl, a second program
SRCS := $(filter-out src/ctl/%,$(wildcard src/*.c src/*/*.c))
OBJS := $(patsubst src/%.c,$(BUILD)/obj/%.o,$(SRCS)) $(BUILD)/obj/runtime_v1.pb-c.o
LIB_OBJS := $(filter-out $(BUILD)/obj/main.o,$(OBJS))
UNIT_SRCS := $(wildcard test/unit/*.c)
UNIT_BINS := $(patsubst test/unit/%.c,$(BUILD)/unit/%,$(UNIT_SRCS))

.PHONY: all asan unit check bench run clean deps fuzz lint grpcgo streamgo
all: $(BUILD)/crisp $(BUILD)/crispctl

$(GEN)/runtime_v1.pb-c.c: proto/runtime_v1.proto
	@mkdir -p $(GEN)
	protoc-c --c_out=$(GEN) -Iproto $<
$(GEN)/runtime_v1.pb-c.h: $(GEN)/runtime_v1.pb-c.c

# From proto/, so nothing can drift from the schema: the method enum
# (CRISP_RPC_<NAME> in declaration order, RuntimeService then ImageService,
# with the names to check it against protobuf-c's descriptors at start), the
# server-streaming RPCs and the RPCs that also exist in v1alpha2.
RPC_NAMES = sed -n 's/^ *rpc \([A-Za-z]*\)(.*/\1/p'
$(GEN)/rpcs.gen.h: proto/runtime_v1.proto proto/runtime_v1alpha2.proto Makefile
	@mkdir -p $(GEN)
	{ printf '/* generated from proto/ by the Makefile */\nenum crisp_rpc {\n'; \
	  $(RPC_NAMES) proto/runtime_v1.proto | sed 's/\([a-z0-9]\)\([A-Z]\)/\1_\2/g' | \
	    tr a-z A-Z | sed 's/.*/    CRISP_RPC_&,/'; \
	  printf '    CRISP_RPC_COUNT\n};\n#define CRISP_RPC_NAMES'; \
	  $(RPC_NAMES) proto/runtime_v1.proto | sed 's/.*/ "&",/' | tr -d '\n'; \
	  printf '\n#define CRISP_STREAMING_RPCS'; \
	  sed -n 's/^ *rpc \([A-Za-z]*\)(.*returns (stream .*/\1/p' proto/runtime_v1.proto | \
	    sed 's/\([a-z0-9]\)\([A-Z]\)/\1_\2/g' | tr a-z A-Z | sed 's/.*/ CRISP_RPC_&,/' | tr -d '\n'; \
	  printf '\n#define CRISP_V1ALPHA2_RPCS'; \
	  $(RPC_NAMES) proto/runtime_v1alpha2.proto | sed 's/.*/ "&",/' | tr -d '\n'; \
	  printf '\n'; } > $@.tmp && mv $@.tmp $@

$(BUILD)/obj/runtime_v1.pb-c.o: $(GEN)/runtime_v1.pb-c.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -w -c -o $@ $<

# The version (git describe) in a header rewritten only when it changes, so
# the files that print it are rebuilt with it, and only they.
$(GEN)/version.gen.h: FORCE
	@mkdir -p $(GEN)
	@echo '#define CRISP_VERSION "$(VERSION)"' > $@.tmp
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; fi
.PHONY: FORCE
FORCE:

$(BUILD)/obj/%.o: src/%.c $(GEN)/runtime_v1.pb-c.h $(GEN)/rpcs.gen.h | $(GEN)/version.gen.h
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(WARN) -MMD -MP -c -o $@ $<

$(BUILD)/crisp: $(OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# crispctl (src/ctl): a blocking CRI client and the trace tools; it shares
# crisp's codecs (JSON <-> protobuf, gRPC framing, the method table)
CTL_SRCS := $(wildcard src/ctl/*.c)
CTL_OBJS := $(patsubst src/%.c,$(BUILD)/obj/%.o,$(CTL_SRCS)) \
	$(addprefix $(BUILD)/obj/,trace/pbjson.o trace/pbjson_decode.o trace/jbuf.o core/grpc.o \
	core/method.o runtime_v1.pb-c.o)
$(BUILD)/crispctl: $(CTL_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# crispctl's unit tests link its parts (not crisp's)
$(BUILD)/unit/test_ctl: test/unit/test_ctl.c $(filter-out $(BUILD)/obj/ctl/main.o,$(CTL_OBJS))
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(WARN) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/unit/%: test/unit/%.c $(LIB_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(WARN) $(LDFLAGS) -o $@ $^ $(LIBS)

asan:
	$(MAKE) BUILD=build/asan SANITIZER=address,undefined

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

# libFuzzer needs clang; each harness links only the sources it tests.
FUZZ_CC ?= clang
FUZZ_FLAGS = -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Isrc \
	$(shell $(PKG_CONFIG) --cflags $(PKGS))
fuzz: $(BUILD)/fuzz/fuzz_h1 $(BUILD)/fuzz/fuzz_grpc $(BUILD)/fuzz/fuzz_h2req \
	$(BUILD)/fuzz/fuzz_h1_request $(BUILD)/fuzz/fuzz_spdy $(BUILD)/fuzz/fuzz_stream_text \
	$(BUILD)/fuzz/fuzz_docker $(BUILD)/fuzz/fuzz_config $(BUILD)/fuzz/fuzz_pbjson \
	$(BUILD)/fuzz/fuzz_trace_read

$(BUILD)/fuzz/fuzz_pbjson: test/fuzz/fuzz_pbjson.c src/trace/pbjson.c src/trace/pbjson_decode.c \
		src/trace/jbuf.c $(GEN)/runtime_v1.pb-c.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -Ulinux -I$(GEN) -o $@ $^ -lprotobuf-c -lcjson

$(BUILD)/fuzz/fuzz_trace_read: test/fuzz/fuzz_trace_read.c src/ctl/trace_read.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $^ -lcjson

$(BUILD)/fuzz/fuzz_h1_request: test/fuzz/fuzz_h1_request.c src/http1/request_parser.c \
		src/http1/head.c src/core/md.c src/core/buf.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $^

$(BUILD)/fuzz/fuzz_stream_text: test/fuzz/fuzz_stream_text.c src/stream/text.c src/core/md.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $^ -lcjson -lcrypto

$(BUILD)/fuzz/fuzz_spdy: test/fuzz/fuzz_spdy.c src/stream/spdy.c src/core/md.c src/core/buf.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $^ -lz

$(BUILD)/fuzz/fuzz_docker: test/fuzz/fuzz_docker.c src/docker/decode.c src/docker/decode_stats.c \
		src/docker/meta.c src/docker/json.c src/docker/arena.c $(GEN)/runtime_v1.pb-c.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -Ulinux -I$(GEN) -o $@ $^ -lprotobuf-c -lcjson

$(BUILD)/fuzz/fuzz_config: test/fuzz/fuzz_config.c src/core/config.c src/core/backend.c | $(GEN)/rpcs.gen.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -I$(GEN) -o $@ $^ -lcjson

$(BUILD)/fuzz/fuzz_grpc: test/fuzz/fuzz_grpc.c src/core/grpc.c src/core/grpc_scan.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $^

$(BUILD)/fuzz/fuzz_h2req: test/fuzz/fuzz_h2req.c src/front/h2req.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $^

$(BUILD)/fuzz/fuzz_h1: test/fuzz/fuzz_h1.c src/http1/response_parser.c src/http1/head.c src/core/md.c \
		src/core/buf.c src/core/log.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Isrc \
		$(shell $(PKG_CONFIG) --cflags $(PKGS)) -o $@ $^ $(LIBS)

# The grpc-go CRI client of the tests (test/grpcgo/README.md): Debian's Go,
# grpc-go and protobuf in GOPATH mode, offline (no module download); the Go
# stubs generated from proto/ into the build dir, never committed.
GRPCGO := $(abspath $(BUILD))/grpcgo
GO_ENV := GO111MODULE=off GOPATH=$(GRPCGO)/gopath:/usr/share/gocode GOCACHE=$(GRPCGO)/gocache \
	GOFLAGS= GOPROXY=off GOENV=off GOTOOLCHAIN=local
GO_PKG_MAP := Mruntime_v1.proto=crisp/cri/v1,Mruntime_v1alpha2.proto=crisp/cri/v1alpha2

grpcgo: $(GRPCGO)/crigo

$(GRPCGO)/stubs.stamp: proto/runtime_v1.proto proto/runtime_v1alpha2.proto
	rm -rf $(GRPCGO)/gopath/src/crisp/cri
	@mkdir -p $(GRPCGO)/gopath/src
	protoc -Iproto --go_out=$(GRPCGO)/gopath/src --go_opt=$(GO_PKG_MAP) \
		--go-grpc_out=$(GRPCGO)/gopath/src --go-grpc_opt=$(GO_PKG_MAP) \
		runtime_v1.proto runtime_v1alpha2.proto
	touch $@

$(GRPCGO)/crigo: $(GRPCGO)/stubs.stamp $(wildcard test/grpcgo/*.go)
	cd test/grpcgo && $(GO_ENV) go vet . && $(GO_ENV) go build -o $@ .

# The streaming test client (test/streamgo/README.md): kubectl's SPDY and
# WebSocket executors and port-forwarder on Debian's spdystream and
# gorilla/websocket, the CRI calls on crigo's stubs; GOPATH mode, offline.
streamgo: $(GRPCGO)/streamgo

$(GRPCGO)/streamgo: $(GRPCGO)/stubs.stamp $(wildcard test/streamgo/*.go)
	cd test/streamgo && $(GO_ENV) go vet . && $(GO_ENV) go build -o $@ .

# Function length (the layering issue's targets: none over 80 lines).
lint:
	python3 test/lint/funclen.py --max 60 --median 12 --p90 35 src

deps:
	./test/deps.sh

check:
	./test/run

bench: all
	./bench/run

run:
	./deploy/demo.sh

clean:
	rm -rf build

-include $(OBJS:.o=.d)
