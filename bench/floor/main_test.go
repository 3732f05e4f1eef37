package main

import (
	"bufio"
	"context"
	"net"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

	"github.com/roomcast/roomcast/relay/proto"
)

// startFloor runs the floor on a free loopback port with one loop and
// returns its address; the engine stops with the test.
func startFloor(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	booted := make(chan gnet.Engine, 1)
	stopped := make(chan error, 1)
	go func() { stopped <- run(&server{onBoot: func(e gnet.Engine) { booted <- e }}, addr, 1, 256<<10) }()
	select {
	case eng := <-booted:
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = eng.Stop(ctx)
		})
	case err := <-stopped:
		t.Fatalf("floor did not start: %v", err)
	}
	return addr
}

// readData reads the next data frame's payload.
func readData(t *testing.T, conn net.Conn, br *bufio.Reader) []byte {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	f, err := ws.ReadFrame(br)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return f.Payload
}

// field returns the msgpack map m's string or uint field key as a string.
func field(t *testing.T, m []byte, key string) string {
	t.Helper()
	var sc proto.Scanner
	sc.Reset(m)
	for n := sc.MapLen(); n > 0 && !sc.Bad(); n-- {
		if string(sc.Str()) != key {
			sc.Skip()
			continue
		}
		if m[sc.Pos()] < 0x80 {
			return strconv.FormatUint(sc.Uint(), 10)
		}
		return string(sc.Str())
	}
	t.Fatalf("no %q in %q", key, m)
	return ""
}

// TestFloorAnswersLikeTheRelay: a client with the bench's dialer (which
// checks Sec-WebSocket-Accept and the subprotocol) gets hello, a join sent
// in two pieces gets joined with its ref and room, a close is echoed, and
// /metrics counts the handshake.
func TestFloorAnswersLikeTheRelay(t *testing.T) {
	addr := startFloor(t)
	before := handshakes.Load()
	d := ws.Dialer{Timeout: 5 * time.Second, Protocols: []string{proto.SubprotocolMsgpack}}
	conn, br, hs, err := d.Dial(context.Background(), "ws://"+addr+"/ws?token=x")
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	if hs.Protocol != proto.SubprotocolMsgpack {
		t.Fatalf("subprotocol %q", hs.Protocol)
	}
	if br == nil {
		br = bufio.NewReader(conn)
	}
	if got := field(t, readData(t, conn, br), "t"); got != proto.THello {
		t.Fatalf("first frame %q, want hello", got)
	}
	p := proto.AppendMapHeader(nil, 3)
	p = proto.AppendString(proto.AppendString(p, "t"), proto.TJoin)
	p = proto.AppendUint(proto.AppendString(p, "ref"), 7)
	p = proto.AppendString(proto.AppendString(p, "room"), "lobby")
	frame := proto.AppendClientFrame(nil, ws.OpBinary, p, [4]byte{1, 2, 3, 4})
	for _, part := range [][]byte{frame[:3], frame[3:]} { // the floor must wait for the whole frame
		if _, err := conn.Write(part); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	joined := readData(t, conn, br)
	if got := field(t, joined, "t") + " " + field(t, joined, "ref") + " " + field(t, joined, "room"); got != "joined 7 lobby" {
		t.Fatalf("joined: %q", got)
	}
	if _, err := conn.Write(proto.AppendClientFrame(nil, ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""), [4]byte{5, 6, 7, 8})); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if f, err := ws.ReadFrame(br); err != nil || f.Header.OpCode != ws.OpClose {
		t.Fatalf("close answer: %v %v", f.Header.OpCode, err)
	}
	if n := handshakes.Load() - before; n != 1 {
		t.Fatalf("handshakes counted %d, want 1", n)
	}
	rec := httptest.NewRecorder()
	metrics(rec, httptest.NewRequest("GET", "/metrics", nil))
	if body := rec.Body.String(); !strings.Contains(body, "process_cpu_seconds_total ") || !strings.Contains(body, "roomcast_handshakes_total ") {
		t.Fatalf("metrics: %q", body)
	}
}
