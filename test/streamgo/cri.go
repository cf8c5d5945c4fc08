package main

// cri.go: the CRI calls that hand out streaming URLs, made as the kubelet
// makes them (grpc-go on the unix socket), and a raw Docker exec for the
// benchmark's baseline.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	runtimeapi "crisp/cri/v1"

	"google.golang.org/grpc"
)

func criConn(sock string) (*grpc.ClientConn, error) {
	path := strings.TrimPrefix(sock, "unix://")
	dialer := func(ctx context.Context, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", path)
	}
	return grpc.Dial(path, grpc.WithInsecure(), grpc.WithContextDialer(dialer))
}

type urlReq struct {
	kind      string // exec, attach, portforward
	id        string
	cmd       []string
	tty       bool
	stdin     bool
	stdout    bool
	stderr    bool
	ports     []int32
}

// criURL asks the runtime for a streaming URL, as the kubelet does.
func criURL(conn *grpc.ClientConn, r urlReq) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := runtimeapi.NewRuntimeServiceClient(conn)
	switch r.kind {
	case "exec":
		resp, err := c.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: r.id, Cmd: r.cmd, Tty: r.tty,
			Stdin: r.stdin, Stdout: r.stdout, Stderr: r.stderr})
		if err != nil {
			return "", err
		}
		return resp.Url, nil
	case "attach":
		resp, err := c.Attach(ctx, &runtimeapi.AttachRequest{ContainerId: r.id, Tty: r.tty,
			Stdin: r.stdin, Stdout: r.stdout, Stderr: r.stderr})
		if err != nil {
			return "", err
		}
		return resp.Url, nil
	default:
		resp, err := c.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: r.id, Port: r.ports})
		if err != nil {
			return "", err
		}
		return resp.Url, nil
	}
}

// dockerExec runs cmd in the container straight through the engine's API
// (create, hijacked start, inspect): what `docker exec` costs.
func dockerExec(sock, api, id string, cmd []string) (int, error) {
	path := strings.TrimPrefix(sock, "unix://")
	body, _ := json.Marshal(map[string]interface{}{"AttachStdout": true, "AttachStderr": true, "Cmd": cmd})
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", path)
	}}}
	resp, err := client.Post("http://docker/v"+api+"/containers/"+id+"/exec", "application/json", strings.NewReader(string(body)))
	if err != nil {
		return -1, err
	}
	var created struct{ Id string }
	json.NewDecoder(resp.Body).Decode(&created)
	resp.Body.Close()
	if created.Id == "" {
		return -1, fmt.Errorf("exec create: HTTP %d", resp.StatusCode)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		return -1, err
	}
	start := `{"Detach":false,"Tty":false}`
	fmt.Fprintf(c, "POST /v%s/exec/%s/start HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n"+
		"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: %d\r\n\r\n%s", api, created.Id, len(start), start)
	br := bufio.NewReader(c)
	hr, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		return -1, err
	}
	hr.Body.Close()
	io.Copy(io.Discard, br)
	c.Close()
	for i := 0; i < 300; i++ {
		resp, err = client.Get("http://docker/v" + api + "/exec/" + created.Id + "/json")
		if err != nil {
			return -1, err
		}
		var st struct {
			Running  bool
			ExitCode int
		}
		json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if !st.Running {
			return st.ExitCode, nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return -1, fmt.Errorf("exec still running")
}
