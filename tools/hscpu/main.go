// Command hscpu drives N WebSocket handshakes+joins against an external relay and
// reports the relay's CPU per handshake from /proc/<pid>/stat.
package main

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func token(secret, sub string) string {
	enc := base64.RawURLEncoding
	h := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	p := enc.EncodeToString([]byte(fmt.Sprintf(`{"sub":%q,"name":"Bench %s","exp":%d,"iat":%d}`, sub, sub, time.Now().Add(time.Hour).Unix(), time.Now().Unix())))
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(h + "." + p))
	return h + "." + p + "." + enc.EncodeToString(m.Sum(nil))
}

func cpuTicks(pid int) (u, s int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		panic(err)
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	u, _ = strconv.ParseInt(f[11], 10, 64)
	s, _ = strconv.ParseInt(f[12], 10, 64)
	return
}

func readFrame(br *bufio.Reader) ([]byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return nil, err
	}
	n := int64(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		if _, err := io.ReadFull(br, l[:]); err != nil {
			return nil, err
		}
		n = int64(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		if _, err := io.ReadFull(br, l[:]); err != nil {
			return nil, err
		}
		n = int64(binary.BigEndian.Uint64(l[:]))
	}
	p := make([]byte, n)
	_, err := io.ReadFull(br, p)
	return p, err
}

func one(addr string, req, join []byte) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(req); err != nil {
		return err
	}
	br := bufio.NewReaderSize(c, 4096)
	line, err := br.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.Contains(line, []byte(" 101 ")) {
		return fmt.Errorf("status %q", line)
	}
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) == 2 {
			break
		}
	}
	want := func(t string) error {
		for {
			p, err := readFrame(br)
			if err != nil {
				return err
			}
			if bytes.Contains(p, []byte(t)) {
				return nil
			}
		}
	}
	if err := want("hello"); err != nil {
		return err
	}
	if _, err := c.Write(join); err != nil {
		return err
	}
	return want("joined")
}

func main() {
	addr := flag.String("addr", "127.0.0.1:18471", "relay")
	pid := flag.Int("pid", 0, "relay pid")
	n := flag.Int("n", 3000, "handshakes")
	conc := flag.Int("c", 4, "concurrent clients")
	secret := flag.String("secret", "s", "jwt secret")
	distinct := flag.Bool("distinct", true, "a distinct token (user) per connection")
	flag.Parse()
	body := []byte{0x83, 0xa1, 't', 0xa4, 'j', 'o', 'i', 'n', 0xa4, 'r', 'o', 'o', 'm', 0xa5, 'l', 'o', 'b', 'b', 'y', 0xa3, 'r', 'e', 'f', 0x01}
	join := append([]byte{0x82, 0x80 | byte(len(body)), 0, 0, 0, 0}, body...)
	reqs := make([][]byte, *n)
	for i := range reqs {
		sub := "u0"
		if *distinct {
			sub = "u" + strconv.Itoa(i)
		}
		if i == 0 || *distinct {
			reqs[i] = []byte("GET /ws?token=" + token(*secret, sub) + " HTTP/1.1\r\nHost: " + *addr +
				"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
				"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: roomcast.v1.msgpack\r\n" +
				"Origin: https://game.example\r\nUser-Agent: bench\r\n\r\n")
		} else {
			reqs[i] = reqs[0]
		}
	}
	if err := one(*addr, reqs[0], join); err != nil { // warm up: the room exists
		panic(err)
	}
	time.Sleep(200 * time.Millisecond)
	u0, s0 := cpuTicks(*pid)
	t0 := time.Now()
	var next, fails atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < *conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(*n) {
					return
				}
				if err := one(*addr, reqs[i], join); err != nil {
					fails.Add(1)
					fmt.Fprintln(os.Stderr, err)
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(t0)
	time.Sleep(300 * time.Millisecond) // the relay's closes
	u1, s1 := cpuTicks(*pid)
	tick := 1e6 / 100.0 // µs per tick (CLK_TCK 100)
	fmt.Printf("n=%d c=%d distinct=%v fails=%d wall=%v rate=%.0f/s relay user=%.1f sys=%.1f total=%.1f µs/handshake\n",
		*n, *conc, *distinct, fails.Load(), el.Round(time.Millisecond), float64(*n)/el.Seconds(),
		float64(u1-u0)*tick/float64(*n), float64(s1-s0)*tick/float64(*n), float64(u1-u0+s1-s0)*tick/float64(*n))
}
