package main

// codec.go (a copy of test/grpcgo/codec.go): the "proto" codec on google.golang.org/protobuf (APIv2).
//
// grpc-go 1.33's own codec marshals through github.com/golang/protobuf.
// Upstream pins v1.4 of it, a wrapper over APIv2; Debian's grpc package is
// satisfied by either golang-github-golang-protobuf-1-3-dev (the old
// table-driven library, which panics on the APIv2 messages protoc-gen-go
// 1.28 generates: "protobuf tag not enough fields in VersionResponse.state")
// or -1-5-dev, and apt picks 1-3. Registering the same codec under the same
// name makes the client work with either: the bytes on the wire are what
// upstream grpc-go 1.33 sends (proto.Marshal of APIv2), nothing else of the
// transport changes.

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/protobuf/proto"
)

type protoCodec struct{}

func (protoCodec) Marshal(v interface{}) ([]byte, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("codec: %T is not a proto.Message", v)
	}
	return proto.Marshal(m)
}

func (protoCodec) Unmarshal(data []byte, v interface{}) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("codec: %T is not a proto.Message", v)
	}
	return proto.Unmarshal(data, m)
}

func (protoCodec) Name() string { return "proto" }

func init() {
	encoding.RegisterCodec(protoCodec{})
}
