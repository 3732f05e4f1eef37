package bench

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// dropProxy forwards TCP between bench clients and a relay, and silently
// drops one whole batch frame (the nth) on its way to the victim, the
// victim-th connection accepted.
type dropProxy struct {
	ln      net.Listener
	target  string
	victim  int
	nth     int
	dropped atomic.Int64 // messages in the dropped frame, once dropped
	wg      sync.WaitGroup
}

func startDropProxy(t *testing.T, target string, victim, nth int) *dropProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &dropProxy{ln: ln, target: target, victim: victim, nth: nth}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.wg.Wait()
	})
	return p
}

func (p *dropProxy) accept() {
	defer p.wg.Done()
	for i := 0; ; i++ {
		down, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			down.Close()
			continue
		}
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			_, _ = io.Copy(up, down)
			up.Close()
		}()
		go func() {
			defer p.wg.Done()
			p.relayToClient(up, down, i == p.victim)
			down.Close()
		}()
	}
}

// relayToClient passes the HTTP response through, then frame by frame.
func (p *dropProxy) relayToClient(up, down net.Conn, victim bool) {
	br := bufio.NewReader(up)
	var head []byte
	for !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
		c, err := br.ReadByte()
		if err != nil {
			return
		}
		head = append(head, c)
	}
	if _, err := down.Write(head); err != nil {
		return
	}
	batches := 0
	for {
		frame, payload, err := readServerFrame(br)
		if err != nil {
			return
		}
		if victim && isBatch(payload) {
			if batches++; batches == p.nth {
				p.dropped.Store(countMsgs(payload))
				continue
			}
		}
		if _, err := down.Write(frame); err != nil {
			return
		}
	}
}

// readServerFrame reads one unmasked frame; it returns the whole frame and
// its payload.
func readServerFrame(br *bufio.Reader) (frame, payload []byte, err error) {
	h := make([]byte, 2, 10)
	if _, err := io.ReadFull(br, h); err != nil {
		return nil, nil, err
	}
	n := int(h[1] & 0x7f)
	ext := map[int]int{126: 2, 127: 8}[n]
	if ext > 0 {
		h = h[:2+ext]
		if _, err := io.ReadFull(br, h[2:]); err != nil {
			return nil, nil, err
		}
		n = 0
		for _, c := range h[2:] {
			n = n<<8 | int(c)
		}
	}
	frame = make([]byte, len(h)+n)
	copy(frame, h)
	if _, err := io.ReadFull(br, frame[len(h):]); err != nil {
		return nil, nil, err
	}
	return frame, frame[len(h):], nil
}

func isBatch(payload []byte) bool {
	var s scanner
	var fi frameInfo
	return s.parseFrame(payload, &fi) && string(fi.t) == "batch"
}

func countMsgs(payload []byte) int64 {
	var s scanner
	var fi frameInfo
	s.parseFrame(payload, &fi)
	seqs, _ := s.seqs(payload, fi.msgs, nil)
	return int64(len(seqs))
}

// TestLossReported puts a proxy that drops one batch frame to one member
// between the bench and the relay: the report must show exactly that loss.
func TestLossReported(t *testing.T) {
	srv := startRelay(t)
	proxy := startDropProxy(t, srv.Addr(), 5, 3)
	cfg := smallConfig(srv, Stream)
	cfg.URL = "ws://" + proxy.ln.Addr().String() + "/ws"
	cfg.Connections, cfg.Publishers, cfg.Rate = 20, 2, 40
	rep, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	dropped := proxy.dropped.Load()
	if dropped == 0 {
		t.Fatalf("the proxy dropped nothing (sent %d)", rep.Messages.Sent)
	}
	if rep.Loss.Lost != dropped || rep.Loss.MembersWithLoss != 1 {
		t.Errorf("loss %+v, want %d lost by 1 member", rep.Loss, dropped)
	}
	if rep.Loss.Duplicates != 0 {
		t.Errorf("duplicates %d, want 0", rep.Loss.Duplicates)
	}
}
