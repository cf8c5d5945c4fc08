// streamgo: a test client of crisp's streaming server that does what
// kubectl (client-go) does for exec, attach, port-forward and cp: SPDY/3.1
// on spdystream, WebSocket on gorilla/websocket, the URL from a CRI call
// over grpc-go as the kubelet asks for it. See README.md.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/moby/spdystream"
)

var stderrLog io.Writer = os.Stderr

func fail(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "streamgo: "+format+"\n", a...)
	os.Exit(2)
}

func writeJSON(path string, v interface{}) {
	b, _ := json.Marshal(v)
	if path == "" || path == "-" {
		os.Stdout.Write(append(b, '\n'))
		return
	}
	if err := os.WriteFile(path, b, 0644); err != nil {
		fail("%v", err)
	}
}

type common struct {
	url, cri, id, proto, protos, result string
}

func (c *common) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.url, "url", "", "a streaming URL (else one from -cri)")
	fs.StringVar(&c.cri, "cri", "", "CRI endpoint to ask for the URL (unix:///path)")
	fs.StringVar(&c.id, "id", "", "container (exec, attach) or pod sandbox (port-forward)")
	fs.StringVar(&c.proto, "proto", "spdy", "spdy, ws, ws-spdy")
	fs.StringVar(&c.protos, "protocols", "", "protocols offered, comma-separated (default: client-go's)")
	fs.StringVar(&c.result, "result", "", "where the result JSON goes (default stdout, exec: stderr's last line)")
}

func (c *common) getURL(r urlReq) string {
	if c.url != "" {
		return c.url
	}
	conn, err := criConn(c.cri)
	if err != nil {
		fail("%v", err)
	}
	defer conn.Close()
	r.id = c.id
	u, err := criURL(conn, r)
	if err != nil {
		writeJSON(c.result, map[string]string{"cri_error": err.Error()})
		os.Exit(3)
	}
	return u
}

func (c *common) offered(def string) []string {
	if c.protos == "" {
		c.protos = def
	}
	if c.protos == "none" {
		return nil
	}
	return strings.Split(c.protos, ",")
}

type execResult struct {
	upgradeResult
	Error   string  `json:"error"`
	Final   string  `json:"final"` // the error channel's content
	Seconds float64 `json:"seconds"`
	URL     string  `json:"url"`
}

func cmdExec(args []string, attach bool) {
	fs := flag.NewFlagSet("exec", flag.ExitOnError)
	var c common
	c.flags(fs)
	cmd := fs.String("cmd", `["sh"]`, "the command, JSON array")
	stdin := fs.Bool("stdin", false, "send our stdin")
	tty := fs.Bool("tty", false, "a terminal")
	noStdout := fs.Bool("no-stdout", false, "no stdout channel")
	stderr := fs.Bool("stderr", true, "a stderr channel (not with -tty)")
	resize := fs.String("resize", "", "terminal sizes sent at the start: 80x24,100x40")
	vanish := fs.Duration("vanish-after", 0, "close the TCP connection abruptly after this long")
	fs.Parse(args)
	var argv []string
	json.Unmarshal([]byte(*cmd), &argv)
	kind := "exec"
	if attach {
		kind = "attach"
	}
	r := urlReq{kind: kind, cmd: argv, tty: *tty, stdin: *stdin, stdout: !*noStdout, stderr: *stderr && !*tty}
	url := c.getURL(r)
	var res execResult
	res.URL = url
	o := execIO{stdout: os.Stdout, stderr: os.Stderr, tty: *tty, wantStdout: r.stdout, wantStderr: r.stderr}
	if *stdin {
		o.stdin = os.Stdin
	}
	for _, s := range strings.Split(*resize, ",") {
		var sz termSize
		if _, err := fmt.Sscanf(s, "%dx%d", &sz.Width, &sz.Height); err == nil {
			o.resize = append(o.resize, sz)
		}
	}
	t0 := time.Now()
	var err error
	var closer io.Closer
	switch c.proto {
	case "spdy":
		var conn net.Conn
		conn, res.upgradeResult, err = spdyUpgrade(url, c.offered("v5.channel.k8s.io,v4.channel.k8s.io,v3.channel.k8s.io,v2.channel.k8s.io,channel.k8s.io"))
		if conn != nil {
			closer = conn
			vanishLater(*vanish, conn)
			res.Final, err = spdyExec(conn, res.Protocol, o)
		}
	case "ws":
		ws, up, derr := wsDial(url, c.offered("v5.channel.k8s.io,v4.channel.k8s.io"))
		res.upgradeResult, err = up, derr
		if ws != nil {
			closer = ws.UnderlyingConn()
			vanishLater(*vanish, ws.UnderlyingConn())
			res.Final, err = wsExec(ws, o)
		}
	default:
		fail("exec: -proto spdy or ws")
	}
	_ = closer
	res.Seconds = time.Since(t0).Seconds()
	if err != nil {
		res.Error = err.Error()
	}
	if c.result == "" {
		c.result = "-"
		b, _ := json.Marshal(res)
		fmt.Fprintf(os.Stderr, "\nSTREAMGO %s\n", b)
		return
	}
	writeJSON(c.result, res)
}

// vanishLater: the client goes away without a word (a RST when possible).
func vanishLater(d time.Duration, c net.Conn) {
	if d <= 0 {
		return
	}
	go func() {
		time.Sleep(d)
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0)
		} else if bc, ok := c.(*bufConn); ok {
			if tc, ok := bc.Conn.(*net.TCPConn); ok {
				tc.SetLinger(0)
			}
		}
		c.Close()
		os.Exit(0)
	}()
}

type pfResult struct {
	upgradeResult
	Conns   []forwardResult `json:"conns"`
	Bytes   int64           `json:"bytes"`
	Seconds float64         `json:"seconds"`
	MiBps   float64         `json:"mib_per_s"`
	Error   string          `json:"error"`
}

func pfConn(c *common, url string) (*spdystream.Connection, upgradeResult, error) {
	var nc net.Conn
	var up upgradeResult
	var err error
	switch c.proto {
	case "spdy":
		nc, up, err = spdyUpgrade(url, c.offered("portforward.k8s.io"))
	case "ws-spdy":
		ws, u, derr := wsDial(url, c.offered("SPDY/3.1+portforward.k8s.io"))
		up, err = u, derr
		if ws != nil {
			nc = &wsConn{ws: ws}
		}
	default:
		fail("portforward: -proto spdy or ws-spdy")
	}
	if nc == nil || err != nil {
		return nil, up, err
	}
	conn, err := spdystream.NewConnection(nc, false)
	if err != nil {
		return nil, up, err
	}
	go conn.Serve(spdystream.NoOpStreamHandler)
	return conn, up, nil
}

func cmdPortForward(args []string) {
	fs := flag.NewFlagSet("portforward", flag.ExitOnError)
	var c common
	c.flags(fs)
	port := fs.Int("port", 0, "the port in the pod")
	conns := fs.Int("conns", 1, "forwarded connections at once")
	size := fs.Int64("bytes", 1<<20, "bytes each connection sends (the pod echoes them)")
	listen := fs.String("listen", "", "serve a local listener as kubectl port-forward (until stdin ends)")
	request := fs.String("request", "", "send these bytes (Go-quoted) instead, and report the reply")
	fs.Parse(args)
	url := c.getURL(urlReq{kind: "portforward"})
	conn, up, err := pfConn(&c, url)
	res := pfResult{upgradeResult: up}
	if err != nil || conn == nil {
		if err != nil {
			res.Error = err.Error()
		}
		writeJSON(c.result, res)
		return
	}
	defer conn.Close()
	if *listen != "" {
		go func() {
			io.Copy(io.Discard, os.Stdin)
			os.Exit(0)
		}()
		err := listenForward(conn, *listen, *port, func(a string) { fmt.Printf("Forwarding from %s -> %d\n", a, *port) })
		fail("%v", err)
	}
	if *request != "" {
		var send string
		if _, err := fmt.Sscanf(*request, "%q", &send); err != nil {
			send = *request
		}
		r := requestOne(conn, *port, send)
		writeJSON(c.result, r)
		return
	}
	t0 := time.Now()
	res.Conns = make([]forwardResult, *conns)
	var wg sync.WaitGroup
	for i := 0; i < *conns; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			res.Conns[i] = forwardOne(conn, *port, *size)
		}(i)
	}
	wg.Wait()
	res.Seconds = time.Since(t0).Seconds()
	for _, r := range res.Conns {
		res.Bytes += r.Received
	}
	res.MiBps = float64(res.Bytes) / res.Seconds / (1 << 20)
	writeJSON(c.result, res)
}

// tcpEcho is the baseline: the same echo exchange straight over TCP (run
// inside the pod's network namespace with nsenter).
func cmdTCP(args []string) {
	fs := flag.NewFlagSet("tcp", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:8080", "where")
	conns := fs.Int("conns", 1, "connections at once")
	size := fs.Int64("bytes", 1<<20, "bytes each sends")
	fs.Parse(args)
	t0 := time.Now()
	res := pfResult{Conns: make([]forwardResult, *conns)}
	var wg sync.WaitGroup
	for i := 0; i < *conns; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c, err := net.Dial("tcp", *addr)
			if err != nil {
				res.Conns[i].Error = err.Error()
				return
			}
			go func() {
				n, _ := io.Copy(c, &pattern{left: *size})
				res.Conns[i].Sent = n
				c.(*net.TCPConn).CloseWrite()
			}()
			chk := &patternCheck{}
			res.Conns[i].Received, _ = io.Copy(chk, c)
			res.Conns[i].SameData = chk.ok() && res.Conns[i].Received == *size
			c.Close()
		}(i)
	}
	wg.Wait()
	res.Seconds = time.Since(t0).Seconds()
	for _, r := range res.Conns {
		res.Bytes += r.Received
	}
	res.MiBps = float64(res.Bytes) / res.Seconds / (1 << 20)
	writeJSON("", res)
}

// benchExec: n execs of `true` until their status, through crisp (CRI
// Exec, then the SPDY session) or straight through the engine's API.
func cmdBenchExec(args []string) {
	fs := flag.NewFlagSet("bench-exec", flag.ExitOnError)
	var c common
	c.flags(fs)
	n := fs.Int("n", 20, "execs")
	engine := fs.String("engine", "", "the engine's socket: run the baseline instead")
	api := fs.String("api", "1.41", "the engine's API version")
	fs.Parse(args)
	var lat []float64
	for i := 0; i < *n; i++ {
		t0 := time.Now()
		if *engine != "" {
			if code, err := dockerExec(*engine, *api, c.id, []string{"true"}); err != nil || code != 0 {
				fail("docker exec: %v %d", err, code)
			}
		} else {
			url := c.getURL(urlReq{kind: "exec", cmd: []string{"true"}, stdout: true, stderr: true})
			conn, up, err := spdyUpgrade(url, []string{"v4.channel.k8s.io"})
			if err != nil || conn == nil {
				fail("upgrade: %v %+v", err, up)
			}
			st, err := spdyExec(conn, up.Protocol, execIO{stdout: io.Discard, stderr: io.Discard, wantStdout: true, wantStderr: true})
			conn.Close()
			if err != nil || !strings.Contains(st, "Success") {
				fail("exec: %v %s", err, st)
			}
		}
		lat = append(lat, time.Since(t0).Seconds()*1000)
	}
	sort.Float64s(lat)
	sum := 0.0
	for _, l := range lat {
		sum += l
	}
	writeJSON(c.result, map[string]interface{}{"n": *n, "p50_ms": lat[len(lat)/2], "mean_ms": sum / float64(len(lat)),
		"p90_ms": lat[len(lat)*9/10], "min_ms": lat[0]})
}

// cmdEcho is a fast echo server (the benchmark runs it inside the pod's
// network namespace with nsenter, so the pod's own server is no bottleneck).
func cmdEcho(args []string) {
	fs := flag.NewFlagSet("echo", flag.ExitOnError)
	addr := fs.String("listen", "127.0.0.1:9090", "where")
	fs.Parse(args)
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		fail("%v", err)
	}
	fmt.Println("listening", l.Addr())
	for {
		c, err := l.Accept()
		if err != nil {
			fail("%v", err)
		}
		go func(c net.Conn) {
			io.Copy(c, c)
			c.(*net.TCPConn).CloseWrite()
			io.Copy(io.Discard, c)
			c.Close()
		}(c)
	}
}

func main() {
	if len(os.Args) < 2 {
		fail("usage: streamgo exec|attach|portforward|tcp|bench-exec [flags]")
	}
	switch os.Args[1] {
	case "exec":
		cmdExec(os.Args[2:], false)
	case "attach":
		cmdExec(os.Args[2:], true)
	case "portforward":
		cmdPortForward(os.Args[2:])
	case "tcp":
		cmdTCP(os.Args[2:])
	case "bench-exec":
		cmdBenchExec(os.Args[2:])
	case "echo":
		cmdEcho(os.Args[2:])
	default:
		fail("unknown command %s", os.Args[1])
	}
}
