// Command healthcheck is the Docker HEALTHCHECK of the roomcast image,
// which has no shell, curl or wget: it asks the relay's admin listener for
// /readyz (503 while the relay drains or after its event loops stopped) and
// exits 0 if the answer is 200, else 1.
//
// It reads the admin address where the relay does, ROOMCAST_ADMIN (default
// 127.0.0.1:9090; a wildcard host such as ":9090" or "0.0.0.0:9090" is asked
// on loopback). With ROOMCAST_ADMIN=off it only checks that the public
// listener (ROOMCAST_LISTEN, default :8080) accepts a connection.
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	if err := check(os.Getenv("ROOMCAST_ADMIN"), os.Getenv("ROOMCAST_LISTEN"), 2*time.Second); err != nil {
		fmt.Fprintln(os.Stderr, "unhealthy:", err)
		os.Exit(1)
	}
}

// check asks admin's /readyz, or with admin "off" connects to listen.
func check(admin, listen string, timeout time.Duration) error {
	if admin == "off" {
		if listen == "" {
			listen = ":8080"
		}
		c, err := net.DialTimeout("tcp", loopback(listen), timeout)
		if err != nil {
			return fmt.Errorf("admin API off and the public listener does not accept: %w", err)
		}
		return c.Close()
	}
	if admin == "" {
		admin = "127.0.0.1:9090"
	}
	resp, err := (&http.Client{Timeout: timeout}).Get("http://" + loopback(admin) + "/readyz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz answered %s", resp.Status)
	}
	return nil
}

// loopback replaces a wildcard host of a listen address by 127.0.0.1.
func loopback(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
