package bench

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// bindNoPort lets a socket bound to a source address take its port at
// connect time (IP_BIND_ADDRESS_NO_PORT), so that one port can serve
// several destinations and the kernel's search for a free port is per
// source address and destination, not global.
func bindNoPort(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	}); err != nil {
		return err
	}
	return serr
}
