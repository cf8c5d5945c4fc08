package main

// ws.go: what kubectl's WebSocket executor does (client-go's v5/v4 channel
// protocols: one channel byte per message, v5's close signal for stdin),
// and SPDY tunnelled in WebSocket binary messages, as the API server's
// port-forward tunnel (SPDY/3.1+portforward.k8s.io).

import (
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

func wsURL(u string) string {
	if strings.HasPrefix(u, "https://") {
		return "wss://" + u[len("https://"):]
	}
	return "ws://" + strings.TrimPrefix(u, "http://")
}

func wsDial(rawurl string, protos []string) (*websocket.Conn, upgradeResult, error) {
	var res upgradeResult
	d := websocket.Dialer{Subprotocols: protos, HandshakeTimeout: streamTimeout,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	ws, resp, err := d.Dial(wsURL(rawurl), nil)
	if resp != nil {
		res.Status = resp.StatusCode
		if resp.Body != nil {
			b, _ := io.ReadAll(resp.Body)
			res.Body = string(b)
		}
	}
	if err != nil && resp != nil {
		return nil, res, nil // refused by the server: the status says how
	}
	if err != nil {
		return nil, res, err
	}
	res.Status = http.StatusSwitchingProtocols
	res.Protocol = ws.Subprotocol()
	return ws, res, nil
}

// wsExec: the channels 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize.
func wsExec(ws *websocket.Conn, o execIO) (string, error) {
	proto := ws.Subprotocol()
	b64 := strings.Contains(proto, "base64")
	var mu sync.Mutex
	send := func(ch byte, data []byte) error {
		mu.Lock()
		defer mu.Unlock()
		if b64 {
			return ws.WriteMessage(websocket.TextMessage, append([]byte{'0' + ch}, []byte(base64.StdEncoding.EncodeToString(data))...))
		}
		return ws.WriteMessage(websocket.BinaryMessage, append([]byte{ch}, data...))
	}
	for _, sz := range o.resize {
		b, _ := json.Marshal(sz)
		send(4, b)
	}
	if o.stdin != nil {
		go func() {
			buf := make([]byte, 32*1024)
			for {
				n, err := o.stdin.Read(buf)
				if n > 0 && send(0, buf[:n]) != nil {
					return
				}
				if err != nil {
					break
				}
			}
			if proto == "v5.channel.k8s.io" {
				mu.Lock()
				ws.WriteMessage(websocket.BinaryMessage, []byte{255, 0})
				mu.Unlock()
			}
		}()
	}
	var status strings.Builder
	for {
		typ, msg, err := ws.ReadMessage()
		if err != nil {
			break
		}
		if len(msg) == 0 {
			continue
		}
		ch, data := msg[0], msg[1:]
		if b64 && typ == websocket.TextMessage {
			ch -= '0'
			data, _ = base64.StdEncoding.DecodeString(string(data))
		}
		switch ch {
		case 1:
			o.stdout.Write(data)
		case 2:
			o.stderr.Write(data)
		case 3:
			status.Write(data)
		}
	}
	ws.Close()
	return status.String(), nil
}

// wsConn carries a byte stream in binary messages (the SPDY tunnel).
type wsConn struct {
	ws  *websocket.Conn
	r   io.Reader
	wmu sync.Mutex
}

func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			_, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if err == io.EOF {
			c.r = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

func (c *wsConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsConn) Close() error                       { return c.ws.Close() }
func (c *wsConn) LocalAddr() net.Addr                { return c.ws.LocalAddr() }
func (c *wsConn) RemoteAddr() net.Addr               { return c.ws.RemoteAddr() }
func (c *wsConn) SetDeadline(t time.Time) error      { return c.ws.UnderlyingConn().SetDeadline(t) }
func (c *wsConn) SetReadDeadline(t time.Time) error  { return c.ws.SetReadDeadline(t) }
func (c *wsConn) SetWriteDeadline(t time.Time) error { return c.ws.SetWriteDeadline(t) }
