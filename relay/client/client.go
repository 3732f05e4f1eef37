package client

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/roomcast/roomcast/relay/proto"
)

// Options configure a Client. The zero value connects anonymously in
// msgpack.
type Options struct {
	// Token is the JWT sent on the upgrade (Authorization: Bearer). Zero:
	// anonymous, unless TokenSource is set.
	Token string
	// TokenSource returns a fresh token; it is called before a connection
	// when the token is missing, expired or about to, after a 4010 close,
	// and before the token's exp, to refresh the live connection. Zero:
	// Token is used as long as the relay takes it.
	TokenSource func(ctx context.Context) (string, error)
	// JSON selects the JSON wire format; zero means msgpack.
	JSON bool
	// Header holds extra upgrade request headers (Origin, ...).
	Header http.Header
	// NetDial dials the TCP connection; zero means net.Dialer.
	NetDial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Buffer is how many events each room's channel holds before the
	// client stops reading (see the package doc); zero means 256.
	Buffer int
	// PingInterval: the client sends a ping this often, and drops a
	// connection on which nothing arrived for two intervals; zero means
	// 15 seconds.
	PingInterval time.Duration
	// DialTimeout bounds a connection attempt up to the hello; zero means
	// 10 seconds.
	DialTimeout time.Duration
	// MinBackoff and MaxBackoff bound the delay before a reconnect; it
	// doubles from MinBackoff with every failed attempt, with jitter (a
	// random half of it may be left out). Zero means 250 ms and 30 s.
	MinBackoff, MaxBackoff time.Duration
	// OnState is called on every change of the connection's state, from
	// the client's own goroutine; it must return quickly. Zero: not told.
	OnState func(StateChange)
}

// State is the state of the client's connection.
type State int

// States.
const (
	Connecting State = iota // reconnecting after a drop, or waiting to
	Connected               // connected, every room rejoined
	Closed                  // ended: Err tells why
)

func (s State) String() string {
	switch s {
	case Connected:
		return "connected"
	case Closed:
		return "closed"
	}
	return "connecting"
}

// StateChange reports a change of state and its cause: the close code
// (Code, 0 if none) and error of the connection that ended, the delay
// before the next attempt (Connecting).
type StateChange struct {
	State State
	Code  int
	Err   error
	Delay time.Duration
}

// Client is one connection to a relay, kept alive across drops. Its
// goroutine (run) dials, rejoins, pings and refreshes; each live
// connection has a reader goroutine (read) that hands replies to requests
// and events to rooms.
type Client struct {
	url  string
	opts Options

	ctx    context.Context // ends with Close or a fatal error
	cancel context.CancelFunc
	done   chan struct{}
	ref    atomic.Uint64

	mu      sync.Mutex
	live    *conn         // nil while (re)connecting
	ready   chan struct{} // closed when live is set
	rooms   map[string]*Room
	hello   Hello
	err     error
	token   string    // run and Dial only (and the refresher, within run)
	tokenAt time.Time // the token's exp; zero if none
}

// Dial connects to the relay at url (ws:// or wss://, path /ws) and
// returns once the relay said hello; ctx bounds that first connection
// only. A refusal (HTTP 401: a bad token) is an *Error with Code
// "refused".
func Dial(ctx context.Context, url string, opts Options) (*Client, error) {
	if opts.Buffer <= 0 {
		opts.Buffer = 256
	}
	if opts.PingInterval <= 0 {
		opts.PingInterval = 15 * time.Second
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 10 * time.Second
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 250 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	c := &Client{url: url, opts: opts, done: make(chan struct{}), ready: make(chan struct{}),
		rooms: map[string]*Room{}, token: opts.Token, tokenAt: tokenExp(opts.Token)}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	cn, err := c.connect(ctx, false)
	if err != nil {
		c.cancel()
		return nil, err
	}
	go c.run(cn)
	return c, nil
}

// Hello returns what the relay said on the latest connection.
func (c *Client) Hello() Hello {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hello
}

// Done is closed when the client has ended (Close, or a fatal error).
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns why the client ended: ErrClosed after Close, an *Error
// otherwise (close 4003, HTTP 401, ...); nil while it runs.
func (c *Client) Err() error {
	select {
	case <-c.done:
	default:
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close ends the client: the connection is closed (1000), every room's
// channel closed, every goroutine ended before it returns. Any goroutine.
func (c *Client) Close() error {
	c.cancel()
	<-c.done
	return nil
}

// connect dials with a token that is fresh enough. Run and Dial only.
func (c *Client) connect(ctx context.Context, fresh bool) (*conn, error) {
	if src := c.opts.TokenSource; src != nil && (fresh || c.token == "" ||
		!c.tokenAt.IsZero() && time.Until(c.tokenAt) < 2*time.Second) {
		tok, err := src(ctx)
		if err != nil {
			return nil, err
		}
		c.setToken(tok)
	}
	cn, err := dialConn(ctx, c.url, c.token, &c.opts)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.hello = cn.hello
	c.mu.Unlock()
	return cn, nil
}

func (c *Client) setToken(tok string) {
	c.mu.Lock()
	c.token, c.tokenAt = tok, tokenExp(tok)
	c.mu.Unlock()
}

// run keeps the client connected until Close or a fatal error.
func (c *Client) run(cn *conn) {
	attempt := 0
	var err error
	for {
		stable, serr := c.serve(cn)
		err = serr
		if c.ctx.Err() != nil {
			err = ErrClosed
			break
		}
		if fatal(err) {
			break
		}
		if stable {
			attempt = 0
		}
		cn = nil
		for cn == nil {
			var delay time.Duration
			if attempt > 0 || closeCode(err) != 4010 { // an expired token: at once
				delay = c.backoff(attempt)
			}
			attempt++
			c.state(StateChange{State: Connecting, Code: closeCode(err), Err: err, Delay: delay})
			if !c.sleep(delay) {
				break
			}
			cn, err = c.connect(c.ctx, closeCode(err) == 4010)
			if err != nil && fatal(err) {
				break
			}
		}
		if cn == nil {
			if c.ctx.Err() != nil {
				err = ErrClosed
			}
			break
		}
	}
	c.finish(err)
}

// backoff is the delay before reconnect attempt n (0 first): doubling
// from MinBackoff up to MaxBackoff, less a random part of up to half.
func (c *Client) backoff(n int) time.Duration {
	d := c.opts.MinBackoff << min(n, 20)
	if d > c.opts.MaxBackoff || d <= 0 {
		d = c.opts.MaxBackoff
	}
	return d - rand.N(d/2+1)
}

func (c *Client) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.ctx.Done():
		return false
	}
}

// finish ends the client with err.
func (c *Client) finish(err error) {
	c.cancel()
	c.mu.Lock()
	c.err = err
	rooms := c.rooms
	c.rooms = map[string]*Room{}
	c.mu.Unlock()
	for _, r := range rooms {
		r.end(err)
	}
	c.state(StateChange{State: Closed, Code: closeCode(err), Err: err})
	close(c.done)
}

func (c *Client) state(s StateChange) {
	if c.opts.OnState != nil {
		c.opts.OnState(s)
	}
}

// serve runs one connection: rejoins, publishes it for requests, pings
// and refreshes the token until it ends. stable reports whether it got as
// far as Connected.
func (c *Client) serve(cn *conn) (stable bool, err error) {
	readerDone := make(chan error, 1)
	go func() { readerDone <- c.read(cn) }()
	defer func() {
		c.mu.Lock()
		if c.live == cn {
			c.live, c.ready = nil, make(chan struct{})
		}
		c.mu.Unlock()
	}()
	if err := c.rejoin(cn); err != nil {
		return false, c.drop(cn, readerDone, err)
	}
	c.mu.Lock()
	c.live = cn
	close(c.ready)
	c.mu.Unlock()
	c.state(StateChange{State: Connected})

	ping := time.NewTicker(c.opts.PingInterval)
	defer ping.Stop()
	refresh := time.NewTimer(time.Hour)
	defer refresh.Stop()
	c.schedule(refresh)
	for {
		select {
		case err := <-readerDone:
			return true, err
		case <-ping.C:
			_ = cn.send(&out{T: proto.TPing})
		case <-refresh.C:
			if c.refresh(cn) {
				c.schedule(refresh)
			} else if time.Until(c.tokenExp()) > time.Second {
				refresh.Reset(time.Second) // try again while the old token lasts
			}
		case <-c.ctx.Done():
			return true, c.drop(cn, readerDone, ErrClosed)
		}
	}
}

// drop closes cn (with 1000, waiting briefly for the relay's answer) and
// waits for its reader.
func (c *Client) drop(cn *conn, readerDone chan error, err error) error {
	_ = cn.write(0x8, []byte{0x03, 0xe8}) // close 1000
	select {
	case <-readerDone:
	case <-time.After(time.Second):
		cn.nc.Close()
		<-readerDone
	}
	return err
}

// schedule sets t to the token's refresh time (never, without a
// TokenSource or an exp).
func (c *Client) schedule(t *time.Timer) {
	if exp := c.tokenExp(); c.opts.TokenSource != nil && !exp.IsZero() {
		t.Reset(refreshDelay(time.Now(), exp))
	}
}

func (c *Client) tokenExp() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tokenAt
}

// refresh gets a fresh token and sends it on cn. If that fails, the
// relay closes with 4010 at exp and the next connection takes a fresh
// token. Run only.
func (c *Client) refresh(cn *conn) bool {
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	tok, err := c.opts.TokenSource(ctx)
	if err == nil {
		_, err = cn.request(ctx, c.ref.Add(1), &out{T: proto.TRefresh, Token: tok})
	}
	if err != nil {
		return false
	}
	c.setToken(tok)
	return true
}

// read is the reader goroutine of cn: it hands replies to requests and
// events to rooms until the connection ends.
func (c *Client) read(cn *conn) error {
	var err error
	for {
		_ = cn.nc.SetReadDeadline(time.Now().Add(2 * c.opts.PingInterval))
		f := new(in)
		if err = cn.next(f); err != nil {
			break
		}
		cn.reply(f)
		c.dispatch(f)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		err = errors.New("roomcast: nothing received for two ping intervals")
	}
	cn.fail(err)
	cn.nc.Close()
	return err
}

// dispatch hands a room's frame to the room. Reader only.
func (c *Client) dispatch(f *in) {
	c.mu.Lock()
	r := c.rooms[f.Room]
	c.mu.Unlock()
	if r == nil {
		return
	}
	switch f.T {
	case proto.TJoined:
		r.joined(f)
	case proto.TBatch:
		r.batch(f.Msgs)
	case proto.TPresence:
		r.push(&Presence{Room: r.name, Count: f.Count, Joins: f.Joins, Leaves: f.Leaves})
	case proto.TDelete:
		r.push(&Deleted{Room: r.name, Seq: f.Seq})
	case proto.TClear:
		r.push(&Cleared{Room: r.name})
	case proto.TKicked:
		c.forget(r)
		r.push(&Kicked{Room: r.name, Reason: f.Reason})
		r.end(&Error{Code: CodeKicked, Message: f.Reason, Room: r.name})
	}
}

// conn waits for a live connection.
func (c *Client) conn(ctx context.Context) (*conn, error) {
	for {
		c.mu.Lock()
		cn, ready := c.live, c.ready
		c.mu.Unlock()
		if cn != nil {
			return cn, nil
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.done:
			return nil, c.Err()
		}
	}
}

// do sends f on the live connection and waits for its reply.
func (c *Client) do(ctx context.Context, f *out) (*in, error) {
	cn, err := c.conn(ctx)
	if err != nil {
		return nil, err
	}
	return cn.request(ctx, c.ref.Add(1), f)
}

// SendOptions are the optional parts of a message.
type SendOptions struct {
	Meta map[string]string // at most 16 entries (see the relay's limits)
}

// Send sends a message to a room the client joined and returns the seq
// the relay gave it. Errors: *Error (rate_limited with RetryMS,
// not_joined, too_large, ...), ErrDisconnected, ctx's.
func (c *Client) Send(ctx context.Context, room, body string, opts SendOptions) (uint64, error) {
	f, err := c.do(ctx, &out{T: proto.TSend, Room: room, Body: body, Meta: opts.Meta})
	if err != nil {
		return 0, err
	}
	return f.Seq, nil
}

// Ping asks the relay for a pong and returns the round trip.
func (c *Client) Ping(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	if _, err := c.do(ctx, &out{T: proto.TPing}); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// Mod is a moderation action (roles mod and admin): Action is one of
// proto.ActDelete (Seq), ActTimeout (User, Secs), ActBan, ActUnban (User),
// ActSlow (Secs), ActClear.
type Mod struct {
	Action string
	User   string
	Secs   int64
	Seq    uint64
}

// Moderate applies a moderation action to a room.
func (c *Client) Moderate(ctx context.Context, room string, m Mod) error {
	_, err := c.do(ctx, &out{T: proto.TMod, Room: room, Action: m.Action, User: m.User, Secs: m.Secs, Seq: m.Seq})
	return err
}

// forget removes r from the rooms to rejoin.
func (c *Client) forget(r *Room) {
	c.mu.Lock()
	if c.rooms[r.name] == r {
		delete(c.rooms, r.name)
	}
	c.mu.Unlock()
}
