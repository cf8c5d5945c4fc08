package main

// wire.go: what crosses the wire, seen from the client. Every connection the
// dialer makes is wrapped (under TLS: the decrypted stream, above the
// handshake) and its HTTP/2 frames are parsed in both directions, so a test
// can say what grpc-go sent (PINGs, RST_STREAM on cancel, WINDOW_UPDATEs)
// and what the server answered (PING ACKs, GOAWAY, RST_STREAM, SETTINGS),
// and whether the server closed the connection. grpc-go itself is not
// touched: this is the net.Conn it reads and writes.

import (
	"encoding/binary"
	"net"
	"sync"
	"time"
)

// HTTP/2 frame types (RFC 9113 section 6).
const (
	frameData         = 0x0
	frameHeaders      = 0x1
	framePriority     = 0x2
	frameRSTStream    = 0x3
	frameSettings     = 0x4
	framePushPromise  = 0x5
	framePing         = 0x6
	frameGoAway       = 0x7
	frameWindowUpdate = 0x8
	frameContinuation = 0x9

	flagEndStream = 0x1
	flagAck       = 0x1
)

const clientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

var frameNames = map[byte]string{
	frameData: "DATA", frameHeaders: "HEADERS", framePriority: "PRIORITY",
	frameRSTStream: "RST_STREAM", frameSettings: "SETTINGS", framePushPromise: "PUSH_PROMISE",
	framePing: "PING", frameGoAway: "GOAWAY", frameWindowUpdate: "WINDOW_UPDATE",
	frameContinuation: "CONTINUATION",
}

var h2ErrNames = map[uint32]string{
	0x0: "NO_ERROR", 0x1: "PROTOCOL_ERROR", 0x2: "INTERNAL_ERROR", 0x3: "FLOW_CONTROL_ERROR",
	0x4: "SETTINGS_TIMEOUT", 0x5: "STREAM_CLOSED", 0x6: "FRAME_SIZE_ERROR", 0x7: "REFUSED_STREAM",
	0x8: "CANCEL", 0x9: "COMPRESSION_ERROR", 0xa: "CONNECT_ERROR", 0xb: "ENHANCE_YOUR_CALM",
	0xc: "INADEQUATE_SECURITY", 0xd: "HTTP_1_1_REQUIRED",
}

func h2ErrName(c uint32) string {
	if n, ok := h2ErrNames[c]; ok {
		return n
	}
	return "UNKNOWN"
}

// GoAway is one GOAWAY frame.
type GoAway struct {
	Dir          string `json:"dir"`
	LastStreamID uint32 `json:"last_stream_id"`
	Code         string `json:"code"`
	Debug        string `json:"debug"`
	At           string `json:"at"`
}

// RST is one RST_STREAM frame.
type RST struct {
	Dir    string `json:"dir"`
	Stream uint32 `json:"stream"`
	Code   string `json:"code"`
}

// ConnStats is what one connection carried.
type ConnStats struct {
	ID        int            `json:"id"`
	Opened    time.Time      `json:"opened"`
	ALPN      string         `json:"alpn,omitempty"`
	FramesOut map[string]int `json:"frames_out"`
	FramesIn  map[string]int `json:"frames_in"`
	BytesOut  int64          `json:"bytes_out"`
	BytesIn   int64          `json:"bytes_in"`
	// PINGs without ACK that the client sent (keepalive, BDP estimation) and
	// the ACKs the server gave for them; PINGs the server sent.
	PingsSent        int `json:"pings_sent"`
	PingAcksReceived int `json:"ping_acks_received"`
	PingsReceived    int `json:"pings_received"`
	PingAcksSent     int `json:"ping_acks_sent"`
	// the server's SETTINGS (id name -> value), the last frame of them
	ServerSettings map[string]uint32 `json:"server_settings"`
	GoAways        []GoAway          `json:"goaways"`
	RSTs           []RST             `json:"rsts"`
	RSTCount       int               `json:"rst_count"`
	// streams the client opened, and how many were open at once at most
	StreamsOpened  int `json:"streams_opened"`
	MaxOpenStreams int `json:"max_open_streams"`
	// the largest DATA frame each way
	MaxDataIn  int `json:"max_data_frame_in"`
	MaxDataOut int `json:"max_data_frame_out"`
	// how the connection ended: "" (open), "client" (grpc-go closed it),
	// "server: <read error>" (EOF or reset from the server)
	Closed   string `json:"closed"`
	ParseErr string `json:"parse_error,omitempty"`

	open map[uint32]bool
}

// Wire records every connection of one ClientConn.
type Wire struct {
	mu          sync.Mutex
	conns       []*ConnStats
	dialErrors  []string
	handshakeEr []string
}

// WireReport is the JSON form of Wire.
type WireReport struct {
	Dials           int          `json:"dials"`
	DialErrors      []string     `json:"dial_errors"`
	HandshakeErrors []string     `json:"handshake_errors"`
	Conns           []*ConnStats `json:"conns"`
}

func (w *Wire) report() WireReport {
	w.mu.Lock()
	defer w.mu.Unlock()
	r := WireReport{Dials: len(w.conns), DialErrors: append([]string{}, w.dialErrors...),
		HandshakeErrors: append([]string{}, w.handshakeEr...)}
	for _, c := range w.conns {
		cp := *c
		cp.FramesIn = copyMap(c.FramesIn)
		cp.FramesOut = copyMap(c.FramesOut)
		cp.GoAways = append([]GoAway{}, c.GoAways...)
		cp.RSTs = append([]RST{}, c.RSTs...)
		ss := map[string]uint32{}
		for k, v := range c.ServerSettings {
			ss[k] = v
		}
		cp.ServerSettings = ss
		cp.open = nil
		r.Conns = append(r.Conns, &cp)
	}
	return r
}

func copyMap(m map[string]int) map[string]int {
	o := make(map[string]int, len(m))
	for k, v := range m {
		o[k] = v
	}
	return o
}

func (w *Wire) dialFailed(err error) {
	w.mu.Lock()
	w.dialErrors = append(w.dialErrors, err.Error())
	w.mu.Unlock()
}

func (w *Wire) handshakeFailed(err error) {
	w.mu.Lock()
	w.handshakeEr = append(w.handshakeEr, err.Error())
	w.mu.Unlock()
}

// wrap starts recording a new connection.
func (w *Wire) wrap(c net.Conn, alpn string) net.Conn {
	w.mu.Lock()
	st := &ConnStats{ID: len(w.conns) + 1, Opened: time.Now(), ALPN: alpn,
		FramesOut: map[string]int{}, FramesIn: map[string]int{}, ServerSettings: map[string]uint32{},
		GoAways: []GoAway{}, RSTs: []RST{}, open: map[uint32]bool{}}
	w.conns = append(w.conns, st)
	w.mu.Unlock()
	wc := &wireConn{Conn: c, w: w, st: st}
	wc.out = &frameParser{dir: "out", skip: len(clientPreface), wc: wc}
	wc.in = &frameParser{dir: "in", wc: wc}
	return wc
}

type wireConn struct {
	net.Conn
	w       *Wire
	st      *ConnStats
	in, out *frameParser
	rmu     sync.Mutex // Read and Write run on different goroutines: a parser each
	wmu     sync.Mutex
}

func (c *wireConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.rmu.Lock()
		c.in.feed(p[:n])
		c.rmu.Unlock()
		c.w.mu.Lock()
		c.st.BytesIn += int64(n)
		c.w.mu.Unlock()
	}
	if err != nil {
		c.w.mu.Lock()
		if c.st.Closed == "" {
			c.st.Closed = "server: " + err.Error()
		}
		c.w.mu.Unlock()
	}
	return n, err
}

func (c *wireConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.wmu.Lock()
		c.out.feed(p[:n])
		c.wmu.Unlock()
		c.w.mu.Lock()
		c.st.BytesOut += int64(n)
		c.w.mu.Unlock()
	}
	return n, err
}

func (c *wireConn) Close() error {
	c.w.mu.Lock()
	if c.st.Closed == "" {
		c.st.Closed = "client"
	}
	c.w.mu.Unlock()
	return c.Conn.Close()
}

var settingNames = map[uint16]string{
	1: "HEADER_TABLE_SIZE", 2: "ENABLE_PUSH", 3: "MAX_CONCURRENT_STREAMS", 4: "INITIAL_WINDOW_SIZE",
	5: "MAX_FRAME_SIZE", 6: "MAX_HEADER_LIST_SIZE", 8: "ENABLE_CONNECT_PROTOCOL",
}

// frameParser follows one direction of the byte stream, frame by frame,
// keeping the payload only of the (small) control frames it decodes.
type frameParser struct {
	dir     string
	skip    int // bytes of the client preface still to pass over
	hdr     [9]byte
	hdrN    int
	left    int // payload bytes of the current frame still to come
	keep    bool
	payload []byte
	typ     byte
	flags   byte
	stream  uint32
	length  int
	broken  bool
	wc      *wireConn
}

func (f *frameParser) feed(p []byte) {
	for len(p) > 0 && !f.broken {
		if f.skip > 0 {
			n := min(f.skip, len(p))
			f.skip -= n
			p = p[n:]
			continue
		}
		if f.hdrN < 9 {
			n := copy(f.hdr[f.hdrN:], p)
			f.hdrN += n
			p = p[n:]
			if f.hdrN < 9 {
				return
			}
			f.length = int(f.hdr[0])<<16 | int(f.hdr[1])<<8 | int(f.hdr[2])
			f.typ = f.hdr[3]
			f.flags = f.hdr[4]
			f.stream = binary.BigEndian.Uint32(f.hdr[5:9]) & 0x7fffffff
			f.left = f.length
			switch f.typ {
			case frameRSTStream, frameSettings, framePing, frameGoAway:
				f.keep = f.length <= 1<<16
			default:
				f.keep = false
			}
			f.payload = f.payload[:0]
		}
		if f.left > 0 {
			n := min(f.left, len(p))
			if f.keep {
				f.payload = append(f.payload, p[:n]...)
			}
			f.left -= n
			p = p[n:]
		}
		if f.left == 0 {
			f.frame()
			f.hdrN = 0
		}
	}
}

func min(a, b int) int {
	if a < b {
		return a
	}
	return b
}

func (f *frameParser) frame() {
	w := f.wc.w
	st := f.wc.st
	w.mu.Lock()
	defer w.mu.Unlock()
	name, ok := frameNames[f.typ]
	if !ok {
		name = "UNKNOWN"
	}
	out := f.dir == "out"
	if out {
		st.FramesOut[name]++
	} else {
		st.FramesIn[name]++
	}
	switch f.typ {
	case frameData:
		if out && f.length > st.MaxDataOut {
			st.MaxDataOut = f.length
		}
		if !out && f.length > st.MaxDataIn {
			st.MaxDataIn = f.length
		}
		if !out && f.flags&flagEndStream != 0 {
			delete(st.open, f.stream)
		}
	case frameHeaders:
		if out && !st.open[f.stream] && f.stream%2 == 1 {
			st.open[f.stream] = true
			st.StreamsOpened++
			if len(st.open) > st.MaxOpenStreams {
				st.MaxOpenStreams = len(st.open)
			}
		}
		if !out && f.flags&flagEndStream != 0 {
			delete(st.open, f.stream)
		}
	case frameRSTStream:
		code := "?"
		if len(f.payload) == 4 {
			code = h2ErrName(binary.BigEndian.Uint32(f.payload))
		}
		st.RSTCount++
		if len(st.RSTs) < 1000 {
			st.RSTs = append(st.RSTs, RST{Dir: f.dir, Stream: f.stream, Code: code})
		}
		delete(st.open, f.stream)
	case frameSettings:
		if !out && f.flags&flagAck == 0 {
			for i := 0; i+6 <= len(f.payload); i += 6 {
				id := binary.BigEndian.Uint16(f.payload[i:])
				n, ok := settingNames[id]
				if !ok {
					n = "UNKNOWN"
				}
				st.ServerSettings[n] = binary.BigEndian.Uint32(f.payload[i+2:])
			}
		}
	case framePing:
		ack := f.flags&flagAck != 0
		switch {
		case out && !ack:
			st.PingsSent++
		case out && ack:
			st.PingAcksSent++
		case !out && !ack:
			st.PingsReceived++
		default:
			st.PingAcksReceived++
		}
	case frameGoAway:
		g := GoAway{Dir: f.dir, At: time.Now().Format(time.RFC3339Nano)}
		if len(f.payload) >= 8 {
			g.LastStreamID = binary.BigEndian.Uint32(f.payload) & 0x7fffffff
			g.Code = h2ErrName(binary.BigEndian.Uint32(f.payload[4:]))
			g.Debug = string(f.payload[8:])
		}
		st.GoAways = append(st.GoAways, g)
	}
	if f.length > 1<<24 {
		st.ParseErr = "frame length beyond 16 MiB: lost track of the frames"
		f.broken = true
	}
}
