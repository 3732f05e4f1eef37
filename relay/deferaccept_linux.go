package relay

import (
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// deferAccept is TCP_DEFER_ACCEPT on the public listeners, in seconds: the
// kernel queues a connection for accept only once its first bytes (the
// upgrade request, every client here speaks first) have arrived, so a
// loop accepts, registers and reads it in one wake-up instead of waking
// first for the accept and again for the request. A client that connects
// and sends nothing is accepted anyway when the SYN-ACK is resent (after
// about this long; Linux counts it in SYN-ACK retransmissions), and from
// then on the handshake timeout applies. See relay/proto/PROTOCOL.md,
// "Handshake cost".
const deferAccept = 1

// deferAcceptWait bounds how long Start waits for gnet to open every
// loop's listener (it opens them after OnBoot, with no hook of its own).
const deferAcceptWait = 2 * time.Second

// setDeferAccept sets TCP_DEFER_ACCEPT on the public listeners: want of
// them (one per loop with SO_REUSEPORT, else one). gnet opens them and
// offers no socket option for it, so they are found among the process's
// descriptors: listening sockets bound to the public address. Called once
// by Start; it returns how many it set.
func (s *Server) setDeferAccept(want int) int {
	n := 0
	for end := time.Now().Add(deferAcceptWait); ; time.Sleep(time.Millisecond) {
		fds := publicListeners(s.addr)
		n = 0
		for _, fd := range fds {
			if unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, deferAccept) == nil {
				n++
			}
		}
		if n >= want || time.Now().After(end) {
			return n
		}
	}
}

// publicListeners returns the descriptors of this process's listening TCP
// sockets bound to addr (as sockaddrString writes it).
func publicListeners(addr string) []int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil
	}
	var fds []int
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil || v != 1 {
			continue // not a socket, or not listening
		}
		if sa, err := unix.Getsockname(fd); err == nil && sockaddrString(sa) == addr {
			fds = append(fds, fd)
		}
	}
	return fds
}
