package main

// dial.go: a ClientConn made the way the kubelet's remote runtime/image
// clients make theirs (see README.md for the mapping to the kubelet's and
// crictl's own code).

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
)

const maxMsgSize = 16 * 1024 * 1024 // the kubelet's maxMsgSize

type dialOptions struct {
	endpoint       string
	authority      string // "" = grpc-go's default: the dial target (the socket path)
	block          bool   // crictl <= 1.25's connection: WithBlock + a dial timeout
	connectTimeout time.Duration
	maxMsg         int
	tlsCA          string
	tlsCert        string
	tlsKey         string
	tlsServerName  string
	kaTime         time.Duration // 0 = no client keepalive (the kubelet sets none)
	kaTimeout      time.Duration
	kaNoStream     bool
}

// parseEndpoint follows the kubelet's GetAddressAndDialer: unix:///path gives
// the bare path (the dial target, resolved by grpc-go's default passthrough
// resolver), a scheme-less path falls back to unix. tcp://host:port is the
// kubelet's "only support unix socket endpoint"; here it is allowed with TLS
// only, for crisp's TLS listener.
func parseEndpoint(ep string) (network, addr string, err error) {
	u, err := url.Parse(ep)
	if err == nil && u.Scheme == "" {
		u, err = url.Parse("unix://" + ep)
	}
	if err != nil {
		return "", "", err
	}
	switch u.Scheme {
	case "unix":
		return "unix", u.Path, nil
	case "tcp":
		return "tcp", u.Host, nil
	}
	return "", "", fmt.Errorf("protocol %q not supported", u.Scheme)
}

// sniffCreds is the TLS transport credentials with the decrypted connection
// recorded by the Wire (and the ALPN protocol the server chose).
type sniffCreds struct {
	credentials.TransportCredentials
	w *Wire
}

func (s sniffCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	c, ai, err := s.TransportCredentials.ClientHandshake(ctx, authority, raw)
	if err != nil {
		s.w.handshakeFailed(err)
		return nil, nil, err
	}
	alpn := ""
	if ti, ok := ai.(credentials.TLSInfo); ok {
		alpn = ti.State.NegotiatedProtocol
	}
	return s.w.wrap(c, alpn), ai, nil
}

func (s sniffCreds) Clone() credentials.TransportCredentials {
	return sniffCreds{s.TransportCredentials.Clone(), s.w}
}

func tlsCreds(o *dialOptions) (credentials.TransportCredentials, error) {
	cfg := &tls.Config{ServerName: o.tlsServerName, MinVersion: tls.VersionTLS12}
	if o.tlsCA != "" {
		pem, err := os.ReadFile(o.tlsCA)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no certificate in %s", o.tlsCA)
		}
		cfg.RootCAs = pool
	}
	if o.tlsCert != "" {
		kp, err := tls.LoadX509KeyPair(o.tlsCert, o.tlsKey)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{kp}
	}
	// credentials.NewTLS adds "h2" to NextProtos (ALPN), as for every grpc-go client
	return credentials.NewTLS(cfg), nil
}

func (o *dialOptions) useTLS() bool {
	return o.tlsCA != "" || o.tlsCert != "" || o.tlsServerName != ""
}

// dial returns the ClientConn. Like the kubelet's, the dial does not block:
// grpc-go connects in the background and the first call waits for it (within
// the call's own deadline).
func dial(o *dialOptions, w *Wire) (*grpc.ClientConn, error) {
	network, addr, err := parseEndpoint(o.endpoint)
	if err != nil {
		return nil, err
	}
	useTLS := o.useTLS()
	if network == "tcp" && !useTLS {
		return nil, errors.New("tcp:// endpoints need TLS (-tls-ca): crisp's TCP listener is TLS only")
	}
	dialer := func(ctx context.Context, a string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, a)
		if err != nil {
			w.dialFailed(err)
			return nil, err
		}
		if useTLS {
			return c, nil // recorded above the TLS handshake, by sniffCreds
		}
		return w.wrap(c, ""), nil
	}
	bo := backoff.DefaultConfig
	bo.BaseDelay = 100 * time.Millisecond
	bo.MaxDelay = 3 * time.Second
	opts := []grpc.DialOption{
		grpc.WithContextDialer(dialer),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(o.maxMsg), grpc.MaxCallSendMsgSize(o.maxMsg)),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bo, MinConnectTimeout: 5 * time.Second}),
	}
	if useTLS {
		c, err := tlsCreds(o)
		if err != nil {
			return nil, err
		}
		opts = append(opts, grpc.WithTransportCredentials(sniffCreds{c, w}))
	} else {
		opts = append(opts, grpc.WithInsecure())
	}
	if o.authority != "" {
		opts = append(opts, grpc.WithAuthority(o.authority))
	}
	if o.kaTime > 0 {
		opts = append(opts, grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time: o.kaTime, Timeout: o.kaTimeout, PermitWithoutStream: o.kaNoStream}))
	}
	if o.block {
		opts = append(opts, grpc.WithBlock())
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.connectTimeout)
	defer cancel()
	// the target is the bare socket path (or host:port): grpc-go's default
	// passthrough resolver hands it to the dialer, and uses it as :authority
	return grpc.DialContext(ctx, addr, opts...)
}

// methodPath makes "/runtime.<api>.<Service>/<Method>" from the short forms
// the tests use ("Version", "ImageService/PullImage"); a full path is kept.
func methodPath(m, api string) string {
	if strings.HasPrefix(m, "/") {
		return m
	}
	if api == "" {
		api = "v1"
	}
	svc := "RuntimeService"
	if i := strings.IndexByte(m, '/'); i >= 0 {
		svc, m = m[:i], m[i+1:]
	}
	return "/runtime." + api + "." + svc + "/" + m
}
