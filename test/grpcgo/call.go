package main

// call.go: one CRI call by name, with the generated message types found in
// the protobuf registry (the stubs generated from proto/ at build time):
// ClientConn.Invoke for unary methods and ClientConn.NewStream for server
// streams, which is exactly what the generated clients (and so the
// kubelet's) call underneath.

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	criv1 "crisp/cri/v1"
	criv1alpha2 "crisp/cri/v1alpha2"
)

// the canonical names (as in grpc's status codes doc and python's grpc.StatusCode)
var codeNames = map[codes.Code]string{
	codes.OK: "OK", codes.Canceled: "CANCELLED", codes.Unknown: "UNKNOWN",
	codes.InvalidArgument: "INVALID_ARGUMENT", codes.DeadlineExceeded: "DEADLINE_EXCEEDED",
	codes.NotFound: "NOT_FOUND", codes.AlreadyExists: "ALREADY_EXISTS",
	codes.PermissionDenied: "PERMISSION_DENIED", codes.ResourceExhausted: "RESOURCE_EXHAUSTED",
	codes.FailedPrecondition: "FAILED_PRECONDITION", codes.Aborted: "ABORTED",
	codes.OutOfRange: "OUT_OF_RANGE", codes.Unimplemented: "UNIMPLEMENTED", codes.Internal: "INTERNAL",
	codes.Unavailable: "UNAVAILABLE", codes.DataLoss: "DATA_LOSS", codes.Unauthenticated: "UNAUTHENTICATED",
}

func codeName(c codes.Code) string {
	if n, ok := codeNames[c]; ok {
		return n
	}
	return fmt.Sprintf("CODE_%d", int(c))
}

const defaultCallTimeout = 2 * time.Minute // the kubelet's runtime-request-timeout

// callContext is the call's context: context.WithTimeout per call, as the
// kubelet's getContextWithTimeout; no deadline for timeout 0 (the kubelet's
// PullImage and ExecSync without a timeout use getContextWithCancel).
func (r *runner) callContext(op *Op) (context.Context, context.CancelFunc) {
	ctx := context.Background()
	if len(op.Metadata) > 0 {
		ctx = metadata.NewOutgoingContext(ctx, metadata.New(op.Metadata))
	}
	d := defaultCallTimeout
	if op.Timeout != nil {
		if *op.Timeout <= 0 {
			return context.WithCancel(ctx)
		}
		d = time.Duration(*op.Timeout * float64(time.Second))
	}
	return context.WithTimeout(ctx, d)
}

// rawCodec passes bytes through, for paths outside the schema.
type rawCodec struct{}

func (rawCodec) Marshal(v interface{}) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v interface{}) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

func lookupMethod(path string) (protoreflect.MethodDescriptor, error) {
	p := strings.TrimPrefix(path, "/")
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return nil, fmt.Errorf("bad method path %q", path)
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(p[:i]))
	if err != nil {
		return nil, err
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil, fmt.Errorf("%s is not a service", p[:i])
	}
	md := sd.Methods().ByName(protoreflect.Name(p[i+1:]))
	if md == nil {
		return nil, fmt.Errorf("no method %s in %s", p[i+1:], p[:i])
	}
	return md, nil
}

func newMessage(d protoreflect.MessageDescriptor) (proto.Message, error) {
	mt, err := protoregistry.GlobalTypes.FindMessageByName(d.FullName())
	if err != nil {
		return nil, err
	}
	return mt.New().Interface(), nil
}

func mdJSON(md metadata.MD) map[string][]string {
	out := map[string][]string{}
	for k, vs := range md {
		for _, v := range vs {
			if strings.HasSuffix(k, "-bin") {
				v = base64.StdEncoding.EncodeToString([]byte(v))
			}
			out[k] = append(out[k], v)
		}
	}
	return out
}

var jsonOut = protojson.MarshalOptions{}

func msgJSON(m proto.Message) interface{} {
	b, err := jsonOut.Marshal(m)
	if err != nil {
		return map[string]string{"marshal_error": err.Error()}
	}
	return rawJSON(b)
}

// rawJSON is already-encoded JSON.
type rawJSON []byte

func (j rawJSON) MarshalJSON() ([]byte, error) { return j, nil }

// statusFields fills code, message and details (the google.rpc.Status
// details of grpc-status-details-bin, as grpc-go decodes them).
func statusFields(res map[string]interface{}, err error) {
	st := status.Convert(err)
	res["code"] = int(st.Code())
	res["code_name"] = codeName(st.Code())
	res["message"] = st.Message()
	details := []map[string]string{}
	for _, d := range st.Proto().GetDetails() {
		details = append(details, map[string]string{"type_url": d.GetTypeUrl(),
			"value": base64.StdEncoding.EncodeToString(d.GetValue())})
	}
	res["details"] = details
	if err != nil {
		res["error"] = err.Error()
	}
}

func (r *runner) call(op *Op) map[string]interface{} {
	ctx, cancel := r.callContext(op)
	defer cancel()
	return r.callCtx(ctx, op)
}

func (r *runner) callCtx(ctx context.Context, op *Op) map[string]interface{} {
	path := methodPath(op.Method, op.API)
	res := map[string]interface{}{"id": op.ID, "op": "call", "method": path}
	if dl, ok := ctx.Deadline(); ok {
		res["deadline_s"] = time.Until(dl).Seconds()
	}
	var hdr, trl metadata.MD
	opts := []grpc.CallOption{grpc.Header(&hdr), grpc.Trailer(&trl)}
	t0 := time.Now()
	md, lookErr := lookupMethod(path)
	var err error
	switch {
	case lookErr != nil:
		// outside the schema: raw bytes both ways, unary
		in, derr := base64.StdEncoding.DecodeString(op.RequestB64)
		if derr != nil {
			res["error"] = "request_b64: " + derr.Error()
			return res
		}
		var out []byte
		err = r.conn.Invoke(ctx, path, &in, &out, append(opts, grpc.ForceCodec(rawCodec{}))...)
		if err == nil {
			res["response_b64"] = base64.StdEncoding.EncodeToString(out)
		}
	case md.IsStreamingServer():
		err = r.stream(ctx, op, md, path, res, opts, &hdr, &trl)
	default:
		var in, out proto.Message
		if in, err = r.request(op, md); err != nil {
			res["error"] = err.Error()
			return res
		}
		if out, err = newMessage(md.Output()); err != nil {
			res["error"] = err.Error()
			return res
		}
		err = r.conn.Invoke(ctx, path, in, out, opts...)
		if err == nil {
			res["response"] = msgJSON(out)
			res["response_size"] = proto.Size(out)
		}
	}
	res["elapsed"] = time.Since(t0).Seconds()
	statusFields(res, err)
	res["headers"] = mdJSON(hdr)
	res["trailers"] = mdJSON(trl)
	return res
}

func (r *runner) request(op *Op, md protoreflect.MethodDescriptor) (proto.Message, error) {
	in, err := newMessage(md.Input())
	if err != nil {
		return nil, err
	}
	if len(op.Request) > 0 && string(op.Request) != "null" {
		if err := protojson.Unmarshal(op.Request, in); err != nil {
			return nil, fmt.Errorf("request: %v", err)
		}
	}
	return in, nil
}

// stream runs a server-streaming call: each message is emitted as a line
// {"id", "message"} as it arrives (unless quiet), then the call's result.
func (r *runner) stream(ctx context.Context, op *Op, md protoreflect.MethodDescriptor, path string,
	res map[string]interface{}, opts []grpc.CallOption, hdr, trl *metadata.MD) error {
	in, err := r.request(op, md)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cs, err := r.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, path, opts...)
	if err != nil {
		return err
	}
	if err := cs.SendMsg(in); err != nil && err != io.EOF {
		return err
	}
	if err := cs.CloseSend(); err != nil {
		return err
	}
	n := 0
	stopped := false
	for {
		m, _ := newMessage(md.Output())
		err = cs.RecvMsg(m)
		if err != nil {
			break
		}
		n++
		if !op.Quiet {
			r.emit(map[string]interface{}{"id": op.ID, "message": msgJSON(m), "n": n})
		}
		if op.MaxMessages > 0 && n >= op.MaxMessages {
			stopped = true
			cancel() // as a client that has what it wanted: RST_STREAM(CANCEL)
		}
	}
	res["count"] = n
	res["stopped"] = stopped
	if h, herr := cs.Header(); herr == nil {
		*hdr = h
	}
	*trl = cs.Trailer()
	if err == io.EOF {
		return nil
	}
	return err
}

// concurrent starts every call at once (behind a barrier) on the one
// ClientConn and reports them all.
func (r *runner) concurrent(op *Op) map[string]interface{} {
	results := make([]map[string]interface{}, len(op.Calls))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, c := range op.Calls {
		wg.Add(1)
		go func(i int, c *Op) {
			defer wg.Done()
			ctx, cancel := r.callContext(c)
			defer cancel()
			<-start
			res := r.callCtx(ctx, c)
			if !op.Responses {
				delete(res, "response")
			}
			results[i] = res
		}(i, c)
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	counts := map[string]int{}
	for _, res := range results {
		counts[res["code_name"].(string)]++
	}
	return map[string]interface{}{"id": op.ID, "op": "concurrent", "results": results, "codes": counts,
		"elapsed": time.Since(t0).Seconds()}
}

// negotiate is the kubelet's determineAPIVersion (1.26 to 1.27): Version on
// runtime.v1 with the generated v1 client; on UNIMPLEMENTED, the v1alpha2
// client from then on; any other error fails. Then Version("0.1.0"), as
// the kubelet's runtime manager asks with its kubeRuntimeAPIVersion.
func (r *runner) negotiate(op *Op) map[string]interface{} {
	res := map[string]interface{}{"id": op.ID, "op": "negotiate"}
	ctx, cancel := r.callContext(op)
	defer cancel()
	_, err := criv1.NewRuntimeServiceClient(r.conn).Version(ctx, &criv1.VersionRequest{})
	res["v1_code_name"] = codeName(status.Code(err))
	var ver proto.Message
	switch {
	case err == nil:
		res["api"] = "v1"
		ver, err = criv1.NewRuntimeServiceClient(r.conn).Version(ctx, &criv1.VersionRequest{Version: "0.1.0"})
	case status.Code(err) == codes.Unimplemented:
		res["api"] = "v1alpha2"
		ver, err = criv1alpha2.NewRuntimeServiceClient(r.conn).Version(ctx, &criv1alpha2.VersionRequest{Version: "0.1.0"})
	default:
		err = fmt.Errorf("unable to determine runtime API version: %w", err)
	}
	statusFields(res, err)
	if err == nil && ver != nil {
		res["version"] = msgJSON(ver)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		res["code_name"] = "DEADLINE_EXCEEDED"
	}
	return res
}
