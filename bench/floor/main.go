// Command floor is the floor of a relay handshake on this machine: a gnet
// server that does the system-call work of a roomcast handshake plus a join
// (accept, read the upgrade request, write 101+hello in one write, read the
// join frame, write joined) and none of the relay's work (no token check,
// no session, no room, no GC tuning). Its CPU per handshake, measured the
// way the relay's is (issue 13 part 4, target 50 µs), says how much of the
// relay's figure gnet and the kernel's loopback TCP take on their own.
//
// It runs gnet with the relay's engine options (relay/server.go): one event
// loop per GOMAXPROCS, each accepting on its own SO_REUSEPORT listener (a
// fixed port), TCP_NODELAY, SO_REUSEADDR, a 256 KiB send buffer on the
// listeners. The answers are the relay's msgpack bytes as captured from a
// relay at 7fd7d0d: a 101 with a computed Sec-WebSocket-Accept (the SHA-1 a
// real server does) and the roomcast.v1.msgpack subprotocol plus the
// hello frame (canned: one user's), and on a binary frame a joined frame
// (canned, with the join's ref and room spliced in: the bench matches the
// ref). A close frame is echoed and the connection closed. No per
// connection state: a request starts with "GET ".
//
// -admin serves /metrics with the two metrics roomcast-bench divides for
// connections.relay_cpu_us_per_handshake: process_cpu_seconds_total (utime
// + stime of /proc/self/stat, as the Prometheus process collector reads it)
// and roomcast_handshakes_total (101s written).
//
//	go build -o /tmp/floor/fl ./bench/floor
//	fl -listen 127.0.0.1:18180 -admin 127.0.0.1:19190
package main

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

	"github.com/roomcast/roomcast/relay/proto"
)

// The relay's bytes (captured): everything of the 101 but the accept key,
// the hello frame of user a1b2c3-r4821, and joined's fields after the room.
var (
	resp101a   = []byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ")
	resp101b   = []byte("\r\nSec-WebSocket-Protocol: roomcast.v1.msgpack\r\n\r\n")
	hello      = []byte("\x82~\x00\x8b\x88\xa1t\xa5hello\xa1v\x01\xa4user\xaca1b2c3-r4821\xa4name\xaca1b2c3-r4821\xa4anon\xc2\xa4role\xa4user\xa6limits\x85\xa4rate\xcb?\xe5UUUUUU\xa5burst\x14\xa8max_body\xcd\x01\xf4\xa9max_rooms \xa9max_frame\xce\x00\x01\x00\x00\xa4node\xa2vm")
	joinedTail = []byte("\xa3seq\x00\xa5epoch\xa8oeivtgkr\xa7history\x90\xa3gap\xc2\xa5count\x01\xa7members\x91\x82\xa2id\xaca1b2c3-r4821\xa4name\xaca1b2c3-r4821")
	headerEnd  = []byte("\r\n\r\n")
	keyHeader  = []byte("sec-websocket-key:")
	handshakes atomic.Int64
)

type server struct {
	gnet.BuiltinEventEngine
	onBoot func(gnet.Engine) // nil but in the test
}

// OnBoot hands the engine to onBoot; gnet calls it once.
func (s *server) OnBoot(e gnet.Engine) gnet.Action {
	if s.onBoot != nil {
		s.onBoot(e)
	}
	return gnet.None
}

// OnTraffic answers every whole request or frame in the inbound bytes. gnet
// calls it on the connection's loop.
func (*server) OnTraffic(c gnet.Conn) gnet.Action {
	buf, _ := c.Peek(-1)
	used, act := 0, gnet.None
	for used < len(buf) && act == gnet.None {
		var n int
		if n, act = step(c, buf[used:]); n == 0 {
			break
		}
		used += n
	}
	if used > 0 { // Discard(0) would drop everything
		_, _ = c.Discard(used)
	}
	return act
}

// step answers the request or frame at the head of b; 0: need more bytes.
func step(c gnet.Conn, b []byte) (int, gnet.Action) {
	if bytes.HasPrefix(b, []byte("GET ")) {
		end := bytes.Index(b, headerEnd)
		if end < 0 {
			return 0, gnet.None
		}
		return end + len(headerEnd), upgrade(c, b[:end+2])
	}
	h, hn, err := proto.ParseHeader(b)
	if err == proto.ErrNeedMore || err == nil && int64(len(b)-hn) < h.Length {
		return 0, gnet.None
	}
	if err != nil || !h.Masked {
		return len(b), gnet.Close
	}
	p := b[hn : hn+int(h.Length)]
	ws.Cipher(p, h.Mask, 0)
	switch h.OpCode {
	case ws.OpBinary:
		return hn + len(p), join(c, p)
	case ws.OpClose:
		_, _ = c.Write(proto.AppendFrame(nil, ws.OpClose, p[:min(len(p), 2)]))
		return hn + len(p), gnet.Close
	}
	return hn + len(p), gnet.None
}

// upgrade writes the 101 and hello in one write, as the relay does.
func upgrade(c gnet.Conn, req []byte) gnet.Action {
	key := keyOf(req)
	if key == nil {
		return gnet.Close
	}
	var kb [128]byte
	sum := sha1.Sum(append(append(kb[:0], key...), "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"...))
	out := make([]byte, 0, 512)
	out = append(out, resp101a...)
	out = base64.StdEncoding.AppendEncode(out, sum[:])
	out = append(append(out, resp101b...), hello...)
	handshakes.Add(1)
	if _, err := c.Write(out); err != nil {
		return gnet.Close
	}
	return gnet.None
}

// keyOf returns the Sec-WebSocket-Key of req (lines ending in \r\n), or nil.
func keyOf(req []byte) []byte {
	for len(req) > 0 {
		i := bytes.IndexByte(req, '\n')
		if i < 0 {
			return nil
		}
		line := req[:i+1]
		req = req[i+1:]
		if len(line) > len(keyHeader) && bytes.EqualFold(line[:len(keyHeader)], keyHeader) {
			return bytes.TrimSpace(line[len(keyHeader):])
		}
	}
	return nil
}

// join answers a join {t, ref, room} with the canned joined for that ref
// and room.
func join(c gnet.Conn, p []byte) gnet.Action {
	var sc proto.Scanner
	sc.Reset(p)
	var ref uint64
	var room []byte
	for n := sc.MapLen(); n > 0 && !sc.Bad(); n-- {
		switch string(sc.Str()) {
		case "ref":
			ref = sc.Uint()
		case "room":
			room = sc.Str()
		default:
			sc.Skip()
		}
	}
	if sc.Bad() {
		return gnet.Close
	}
	m := make([]byte, 0, 256)
	m = proto.AppendString(proto.AppendString(proto.AppendMapHeader(m, 9), "t"), "joined")
	m = proto.AppendUint(proto.AppendString(m, "ref"), ref)
	m = append(proto.AppendString(proto.AppendString(m, "room"), string(room)), joinedTail...)
	if _, err := c.Write(proto.AppendFrame(make([]byte, 0, 4+len(m)), ws.OpBinary, m)); err != nil {
		return gnet.Close
	}
	return gnet.None
}

// metrics answers /metrics; net/http's goroutines.
func metrics(w http.ResponseWriter, _ *http.Request) {
	const tick = 100.0 // USER_HZ on Linux
	st, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	f := strings.Fields(string(st[bytes.LastIndexByte(st, ')')+2:])) // f[11], f[12]: utime, stime
	ut, _ := strconv.ParseFloat(f[11], 64)
	stm, _ := strconv.ParseFloat(f[12], 64)
	fmt.Fprintf(w, "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %g\n"+
		"# TYPE roomcast_handshakes_total counter\nroomcast_handshakes_total %d\n", (ut+stm)/tick, handshakes.Load())
}

// run serves listen with the relay's engine options until the engine stops.
func run(s *server, listen string, loops, sendBuf int) error {
	return gnet.Run(s, "tcp://"+listen,
		gnet.WithNumEventLoop(loops),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithReuseAddr(true),
		gnet.WithReusePort(true), // the relay's accept mode on a fixed port
		gnet.WithSocketSendBuffer(sendBuf))
}

func main() {
	listen := flag.String("listen", "127.0.0.1:18180", "public address (a fixed port: every loop accepts on its own SO_REUSEPORT listener)")
	admin := flag.String("admin", "127.0.0.1:19190", `/metrics address ("": none)`)
	loops := flag.Int("loops", runtime.GOMAXPROCS(0), "event loops")
	sendBuf := flag.Int("send-buffer", 256<<10, "SO_SNDBUF of the listeners, as the relay's -send-buffer")
	flag.Parse()
	if *admin != "" {
		go func() { log.Fatal(http.ListenAndServe(*admin, http.HandlerFunc(metrics))) }()
	}
	log.Fatal(run(&server{}, *listen, *loops, *sendBuf))
}
