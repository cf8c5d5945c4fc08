// crigo: a CRI client on grpc-go (Debian's 1.33), the gRPC stack of the
// kubelet and crictl, for crisp's test suite. It dials as the kubelet does
// (dial.go), records the HTTP/2 frames of its connections (wire.go) and
// takes its orders as JSON lines on stdin, one ClientConn for the whole run:
//
//	crigo repl -endpoint unix:///run/crisp/crisp.sock [dial flags]
//	  {"id": 1, "op": "call", "method": "Version", "request": {"version": "0.1.0"}}
//	  {"id": 1, "op": "call", "code": 0, "code_name": "OK", "response": {...}, ...}
//
//	crigo call -endpoint PATH -method /runtime.v1.RuntimeService/ListContainers -json '{}' [-timeout 5s]
//
// See README.md (ops, output, how the dial maps to the kubelet's code).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"
)

func usage() {
	fmt.Fprintf(os.Stderr, `usage:
  crigo repl -endpoint EP [dial flags]          JSON ops on stdin, results on stdout
  crigo call -endpoint EP -method M [-json REQ] [-api v1|v1alpha2] [-timeout D] [dial flags]
  crigo negotiate -endpoint EP [dial flags]     the kubelet's v1 -> v1alpha2 fallback
EP: unix:///path, /path, or tcp://host:port (with -tls-ca: crisp's TLS listener)
`)
	flag.PrintDefaults()
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	sub := os.Args[1]
	fs := flag.NewFlagSet(sub, flag.ExitOnError)
	o := &dialOptions{}
	fs.StringVar(&o.endpoint, "endpoint", "", "CRI endpoint (unix:///path, /path, tcp://host:port)")
	fs.StringVar(&o.authority, "authority", "", "override :authority (default: grpc-go's, the socket path, as kubelets up to 1.30 send)")
	fs.BoolVar(&o.block, "block", false, "block in Dial until connected (crictl <= 1.25's getConnection)")
	fs.DurationVar(&o.connectTimeout, "connect-timeout", 2*time.Minute, "Dial context timeout (the kubelet's runtime-request-timeout)")
	fs.IntVar(&o.maxMsg, "max-msg", maxMsgSize, "max message size, both ways")
	fs.StringVar(&o.tlsCA, "tls-ca", "", "TLS: CA bundle to verify the server (turns TLS on)")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "TLS: client certificate")
	fs.StringVar(&o.tlsKey, "tls-key", "", "TLS: client key")
	fs.StringVar(&o.tlsServerName, "tls-server-name", "", "TLS: name to verify in the server's certificate")
	fs.DurationVar(&o.kaTime, "keepalive-time", 0, "client keepalive ping interval (0: none, as the kubelet)")
	fs.DurationVar(&o.kaTimeout, "keepalive-timeout", 20*time.Second, "client keepalive: wait for the PING ACK")
	fs.BoolVar(&o.kaNoStream, "keepalive-without-stream", false, "client keepalive: ping with no call in flight")
	method := fs.String("method", "", "call: method (full path, or Version, ImageService/PullImage ...)")
	reqJSON := fs.String("json", "{}", "call: request message as protojson")
	api := fs.String("api", "v1", "call: API version of a short method name")
	timeout := fs.Duration("timeout", 2*time.Minute, "call: deadline (0: none)")
	if err := fs.Parse(os.Args[2:]); err != nil {
		os.Exit(2)
	}
	if o.endpoint == "" {
		fmt.Fprintln(os.Stderr, "crigo: -endpoint is required")
		os.Exit(2)
	}
	w := &Wire{}
	conn, err := dial(o, w)
	if err != nil {
		fmt.Fprintf(os.Stderr, "crigo: dial %s: %v\n", o.endpoint, err)
		os.Exit(1)
	}
	defer conn.Close()
	r := &runner{conn: conn, wire: w, out: json.NewEncoder(os.Stdout), calls: map[string]context.CancelFunc{}}
	switch sub {
	case "repl":
		r.repl(os.Stdin)
	case "call":
		req := &Op{Op: "call", ID: "1", Method: *method, API: *api, Request: json.RawMessage(*reqJSON)}
		t := timeout.Seconds()
		req.Timeout = &t
		res := r.call(req)
		r.emit(res)
		if res["code"] != 0 {
			os.Exit(3)
		}
	case "negotiate":
		t := timeout.Seconds()
		r.emit(r.negotiate(&Op{Op: "negotiate", ID: "1", Timeout: &t}))
	default:
		usage()
		os.Exit(2)
	}
}

// Op is one line of input.
type Op struct {
	ID string `json:"id"`
	Op string `json:"op"`
	// call
	Method     string            `json:"method"`
	API        string            `json:"api"`
	Request    json.RawMessage   `json:"request"`
	RequestB64 string            `json:"request_b64"` // raw bytes, for methods outside the schema
	Timeout    *float64          `json:"timeout"`     // seconds; absent: the default (2 min), 0: no deadline
	Metadata   map[string]string `json:"metadata"`
	// server streams: stop (cancel) after this many messages; emit each one
	MaxMessages int  `json:"max_messages"`
	Quiet       bool `json:"quiet"` // streams: do not emit the messages, count them
	// cancel
	Target string `json:"target"`
	// concurrent
	Calls     []*Op `json:"calls"`
	Responses bool  `json:"responses"`
}

type runner struct {
	conn  *grpc.ClientConn
	wire  *Wire
	omu   sync.Mutex
	out   *json.Encoder
	cmu   sync.Mutex
	calls map[string]context.CancelFunc
	wg    sync.WaitGroup
}

func (r *runner) emit(v interface{}) {
	r.omu.Lock()
	defer r.omu.Unlock()
	if err := r.out.Encode(v); err != nil {
		fmt.Fprintf(os.Stderr, "crigo: stdout: %v\n", err)
		os.Exit(1)
	}
}

func (r *runner) repl(in io.Reader) {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			continue
		}
		op := &Op{}
		if err := json.Unmarshal(line, op); err != nil {
			r.emit(map[string]interface{}{"error": "bad op: " + err.Error()})
			continue
		}
		r.dispatch(op)
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "crigo: stdin: %v\n", err)
	}
	// stdin closed: what is still running is cancelled
	r.cmu.Lock()
	for _, c := range r.calls {
		c()
	}
	r.cmu.Unlock()
	r.wg.Wait()
}

func (r *runner) dispatch(op *Op) {
	switch op.Op {
	case "call":
		r.wg.Add(1)
		ctx, cancel := r.callContext(op)
		r.cmu.Lock()
		r.calls[op.ID] = cancel
		r.cmu.Unlock()
		go func() {
			defer r.wg.Done()
			res := r.callCtx(ctx, op)
			cancel()
			r.cmu.Lock()
			delete(r.calls, op.ID)
			r.cmu.Unlock()
			r.emit(res)
		}()
	case "cancel":
		r.cmu.Lock()
		c, ok := r.calls[op.Target]
		r.cmu.Unlock()
		if ok {
			c()
		}
		r.emit(map[string]interface{}{"id": op.ID, "op": "cancel", "target": op.Target, "cancelled": ok})
	case "concurrent":
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.emit(r.concurrent(op))
		}()
	case "negotiate":
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.emit(r.negotiate(op))
		}()
	case "wire":
		r.emit(map[string]interface{}{"id": op.ID, "op": "wire", "wire": r.wire.report(),
			"state": r.conn.GetState().String()})
	default:
		r.emit(map[string]interface{}{"id": op.ID, "op": op.Op, "error": "unknown op"})
	}
}
