package main

// spdy.go: what kubectl's SPDY executor and port-forwarder do (client-go's
// remotecommand v1..v5 over SPDY/3.1 and portforward.k8s.io), on
// spdystream, the library client-go itself uses.

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moby/spdystream"
)

const streamTimeout = 30 * time.Second

// bufConn hands the bytes the HTTP reader already took to spdystream first.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufConn) Read(p []byte) (int, error) { return b.r.Read(p) }

func dialURL(u *url.URL) (net.Conn, error) {
	if u.Scheme == "https" {
		return tls.Dial("tcp", u.Host, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	}
	return net.DialTimeout("tcp", u.Host, streamTimeout)
}

type upgradeResult struct {
	Status   int    `json:"status"`
	Protocol string `json:"protocol"`
	Body     string `json:"body"`
}

// spdyUpgrade: POST with Upgrade: SPDY/3.1 and the protocols offered, as
// client-go's SpdyRoundTripper. On 101 the connection is returned.
func spdyUpgrade(rawurl string, protos []string) (net.Conn, upgradeResult, error) {
	var res upgradeResult
	u, err := url.Parse(rawurl)
	if err != nil {
		return nil, res, err
	}
	c, err := dialURL(u)
	if err != nil {
		return nil, res, err
	}
	req := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: streamgo\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n",
		u.RequestURI(), u.Host)
	for _, p := range protos {
		req += "X-Stream-Protocol-Version: " + p + "\r\n"
	}
	req += "Content-Length: 0\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		c.Close()
		return nil, res, err
	}
	br := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(streamTimeout))
	resp, err := http.ReadResponse(br, nil)
	c.SetReadDeadline(time.Time{})
	if err != nil {
		c.Close()
		return nil, res, err
	}
	res.Status = resp.StatusCode
	res.Protocol = resp.Header.Get("X-Stream-Protocol-Version")
	if resp.StatusCode != http.StatusSwitchingProtocols {
		b, _ := io.ReadAll(resp.Body)
		res.Body = string(b)
		c.Close()
		return nil, res, nil
	}
	return &bufConn{c, br}, res, nil
}

func newStream(conn *spdystream.Connection, h http.Header) (*spdystream.Stream, error) {
	s, err := conn.CreateStream(h, nil, false)
	if err != nil {
		return nil, err
	}
	if err := s.WaitTimeout(streamTimeout); err != nil {
		return nil, err
	}
	return s, nil
}

type execIO struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	tty            bool
	wantStdout     bool
	wantStderr     bool
	resize         []termSize
}

type termSize struct {
	Width  uint16
	Height uint16
}

func protoVersion(p string) int {
	if strings.HasPrefix(p, "v") && len(p) > 1 {
		v, _ := strconv.Atoi(p[1:2])
		return v
	}
	return 1
}

// spdyExec is client-go's streamProtocolV2..V5 (V1 alike): the streams,
// stdin copied then closed, stdout/stderr to the end, the error stream's
// status.
func spdyExec(c net.Conn, proto string, o execIO) (string, error) {
	conn, err := spdystream.NewConnection(c, false)
	if err != nil {
		return "", err
	}
	go conn.Serve(spdystream.NoOpStreamHandler)
	defer conn.Close()
	version := protoVersion(proto)
	mk := func(t string) (*spdystream.Stream, error) {
		h := http.Header{}
		h.Set("streamType", t)
		return newStream(conn, h)
	}
	errS, err := mk("error")
	if err != nil {
		return "", err
	}
	var in, out, serr, rs *spdystream.Stream
	if o.stdin != nil {
		if in, err = mk("stdin"); err != nil {
			return "", err
		}
	}
	if o.wantStdout {
		if out, err = mk("stdout"); err != nil {
			return "", err
		}
	}
	if o.wantStderr && !o.tty {
		if serr, err = mk("stderr"); err != nil {
			return "", err
		}
	}
	if o.tty && version >= 3 {
		if rs, err = mk("resize"); err != nil {
			return "", err
		}
		enc := json.NewEncoder(rs)
		for _, sz := range o.resize {
			enc.Encode(sz)
		}
	}
	statusCh := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(errS)
		statusCh <- string(b)
	}()
	if in != nil {
		go func() {
			io.Copy(in, o.stdin)
			in.Close()
		}()
	}
	var wg sync.WaitGroup
	for _, p := range []struct {
		s *spdystream.Stream
		w io.Writer
	}{{out, o.stdout}, {serr, o.stderr}} {
		if p.s == nil {
			continue
		}
		wg.Add(1)
		go func(s *spdystream.Stream, w io.Writer) {
			defer wg.Done()
			io.Copy(w, s)
		}(p.s, p.w)
	}
	wg.Wait()
	return <-statusCh, nil
}

// forwardResult is one forwarded connection's account.
type forwardResult struct {
	Sent     int64   `json:"sent"`
	Received int64   `json:"received"`
	SameData bool    `json:"same_data"`
	Error    string  `json:"error"`
	Seconds  float64 `json:"seconds"`
}

var requestID struct {
	sync.Mutex
	n int
}

func nextRequestID() string {
	requestID.Lock()
	defer requestID.Unlock()
	requestID.n++
	return strconv.Itoa(requestID.n - 1)
}

// spdyForwardStreams opens a pair as client-go's portforward handleConnection.
func spdyForwardStreams(conn *spdystream.Connection, port int) (*spdystream.Stream, *spdystream.Stream, error) {
	h := http.Header{}
	h.Set("streamType", "error")
	h.Set("port", strconv.Itoa(port))
	h.Set("requestID", nextRequestID())
	errS, err := newStream(conn, h)
	if err != nil {
		return nil, nil, err
	}
	errS.Close() // client-go: we're not writing to this stream
	h.Set("streamType", "data")
	dataS, err := newStream(conn, h)
	if err != nil {
		return nil, nil, err
	}
	return errS, dataS, nil
}

// forwardOne sends size bytes of a pattern through a new pair (with local
// reading/writing as a local connection would), reads what comes back to
// the end, then waits for the error stream.
func forwardOne(conn *spdystream.Connection, port int, size int64) forwardResult {
	var r forwardResult
	t0 := time.Now()
	errS, dataS, err := spdyForwardStreams(conn, port)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	errCh := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(errS)
		errCh <- string(b)
	}()
	sent := make(chan int64, 1)
	go func() {
		n, _ := io.Copy(dataS, &pattern{left: size})
		dataS.Close()
		sent <- n
	}()
	chk := &patternCheck{}
	r.Received, _ = io.Copy(chk, dataS)
	r.Sent = <-sent
	r.Error = <-errCh
	r.SameData = chk.ok() && r.Received == size
	r.Seconds = time.Since(t0).Seconds()
	dataS.Reset()
	errS.Reset()
	return r
}

// pattern is a deterministic byte stream; patternCheck verifies it.
type pattern struct{ off, left int64 }

func (p *pattern) Read(b []byte) (int, error) {
	if p.left == 0 {
		return 0, io.EOF
	}
	n := int64(len(b))
	if n > p.left {
		n = p.left
	}
	for i := int64(0); i < n; i++ {
		b[i] = byte((p.off + i) * 7 % 251)
	}
	p.off += n
	p.left -= n
	return int(n), nil
}

type patternCheck struct {
	off int64
	bad bool
}

func (c *patternCheck) Write(b []byte) (int, error) {
	for i := range b {
		if b[i] != byte((c.off+int64(i))*7%251) {
			c.bad = true
		}
	}
	c.off += int64(len(b))
	return len(b), nil
}

func (c *patternCheck) ok() bool { return !c.bad }

type requestResult struct {
	Reply string `json:"reply"`
	Error string `json:"error"`
}

// requestOne sends a request through a new pair and reads the reply to the
// end (an HTTP/1.0 GET, for a server that is no echo).
func requestOne(conn *spdystream.Connection, port int, req string) requestResult {
	var r requestResult
	errS, dataS, err := spdyForwardStreams(conn, port)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	errCh := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(errS)
		errCh <- string(b)
	}()
	io.WriteString(dataS, req)
	dataS.Close()
	b, _ := io.ReadAll(io.LimitReader(dataS, 1<<20))
	r.Reply = string(b)
	r.Error = <-errCh
	dataS.Reset()
	errS.Reset()
	return r
}

// listenForward is `kubectl port-forward`: a local listener, a pair per
// accepted connection, bytes both ways, half-closes, the error stream
// read to its end (printed on stderr), the streams removed.
func listenForward(conn *spdystream.Connection, addr string, port int, ready func(string)) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	ready(l.Addr().String())
	for {
		lc, err := l.Accept()
		if err != nil {
			return err
		}
		go func(lc net.Conn) {
			defer lc.Close()
			errS, dataS, err := spdyForwardStreams(conn, port)
			if err != nil {
				fmt.Fprintf(stderrLog, "forward: %v\n", err)
				return
			}
			errCh := make(chan string, 1)
			go func() {
				b, _ := io.ReadAll(errS)
				errCh <- string(b)
			}()
			remoteDone := make(chan struct{})
			go func() {
				io.Copy(lc, dataS)
				if tc, ok := lc.(*net.TCPConn); ok {
					tc.CloseWrite()
				}
				close(remoteDone)
			}()
			go func() {
				io.Copy(dataS, lc)
				dataS.Close()
			}()
			<-remoteDone
			if e := <-errCh; e != "" {
				fmt.Fprintf(stderrLog, "an error occurred forwarding %d: %s\n", port, e)
			}
			dataS.Reset()
			errS.Reset()
		}(lc)
	}
}
