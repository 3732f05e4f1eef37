package client

import (
	"context"
	"sync"

	"github.com/roomcast/roomcast/relay/proto"
)

// JoinOptions are the optional parts of a join.
type JoinOptions struct {
	// History asks for the latest History messages (capped by the room's
	// policy); zero means none. With HasSince: how many at most when the
	// relay answers with a gap.
	History int
	// Since resumes after this seq (in Epoch, when given) when HasSince:
	// every kept message after it is handed over, or a *Gap first if some
	// aged out.
	Since    uint64
	HasSince bool
	Epoch    string
}

// JoinInfo is what the relay said in the latest joined of a room.
type JoinInfo struct {
	Seq     uint64 // the room's last seq at the join
	Epoch   string
	Count   int
	Members []proto.Member // rooms that list members only
}

// Room is a room the client joined. Its events arrive on Events until the
// room ends: Leave, a kick, or the end of the client.
type Room struct {
	c      *Client
	name   string
	events chan Event
	done   chan struct{} // closed first when the room ends
	once   sync.Once

	mu     sync.Mutex // held while handing an event over, and to close events
	closed bool

	st        sync.Mutex // guards err and the resume point below; never held while blocked
	err       error
	last      uint64 // seq of the last message handed over
	epoch     string
	resume    bool // last and epoch are a resume point: rejoin with since
	info      JoinInfo
	hasJoined bool
}

// Join joins a room and returns once the relay answered. The room's
// events (history first) arrive on Room.Events. Errors: *Error
// (forbidden, banned, room_full, ...), ErrJoined, ErrDisconnected, ctx's.
func (c *Client) Join(ctx context.Context, name string, o JoinOptions) (*Room, error) {
	r := &Room{c: c, name: name, events: make(chan Event, c.opts.Buffer), done: make(chan struct{}),
		last: o.Since, epoch: o.Epoch, resume: o.HasSince}
	c.mu.Lock()
	if c.rooms[name] != nil {
		c.mu.Unlock()
		return nil, ErrJoined
	}
	if c.err != nil {
		c.mu.Unlock()
		return nil, c.err
	}
	c.rooms[name] = r
	c.mu.Unlock()
	f := &out{T: proto.TJoin, Room: name, History: o.History}
	if o.HasSince {
		since := o.Since
		f.Since, f.Epoch = &since, o.Epoch
	}
	if _, err := c.do(ctx, f); err != nil {
		c.forget(r)
		r.end(err)
		return nil, err
	}
	return r, nil
}

// rejoin joins every room again on a fresh connection, each with since
// and epoch, before the connection takes requests. A room the relay now
// refuses ends with that error. Run only.
func (c *Client) rejoin(cn *conn) error {
	c.mu.Lock()
	rooms := make([]*Room, 0, len(c.rooms))
	for _, r := range c.rooms {
		rooms = append(rooms, r)
	}
	c.mu.Unlock()
	for _, r := range rooms {
		r.st.Lock()
		f := &out{T: proto.TJoin, Room: r.name}
		if r.resume {
			since := r.last
			f.Since, f.Epoch = &since, r.epoch
		}
		ok := r.hasJoined
		r.st.Unlock()
		if !ok { // its Join is still waiting, on a connection now gone
			continue
		}
		for {
			_, err := cn.request(c.ctx, c.ref.Add(1), f)
			if err == nil {
				break
			}
			e, isErr := err.(*Error)
			if !isErr || e == ErrDisconnected {
				return err
			}
			if e.Code == string(proto.CodeRateLimited) || e.Code == string(proto.CodeUnavailable) {
				if !c.sleep(max(c.opts.MinBackoff, msDuration(e.RetryMS))) {
					return ErrClosed
				}
				continue
			}
			c.forget(r)
			r.end(e)
			break
		}
	}
	return nil
}

// Name is the room's name.
func (r *Room) Name() string { return r.name }

// Events returns the room's events, closed when the room ends.
func (r *Room) Events() <-chan Event { return r.events }

// Done is closed when the room ends; its channel may still hold events.
func (r *Room) Done() <-chan struct{} { return r.done }

// Err tells why the room ended: nil after Leave, *Error with Code
// "kicked", or the client's error. Nil while the room lasts.
func (r *Room) Err() error {
	r.st.Lock()
	defer r.st.Unlock()
	return r.err
}

// Info returns what the relay said in the room's latest joined.
func (r *Room) Info() JoinInfo {
	r.st.Lock()
	defer r.st.Unlock()
	return r.info
}

// Position returns the resume point: the epoch and seq of the last message
// handed over (to pass as JoinOptions.Since and Epoch in a later process).
func (r *Room) Position() (epoch string, seq uint64) {
	r.st.Lock()
	defer r.st.Unlock()
	return r.epoch, r.last
}

// Send sends a message to the room; see Client.Send.
func (r *Room) Send(ctx context.Context, body string, opts SendOptions) (uint64, error) {
	return r.c.Send(ctx, r.name, body, opts)
}

// Leave leaves the room and closes its channel. The room is forgotten
// even when the relay cannot be told (no live connection within ctx).
func (r *Room) Leave(ctx context.Context) error {
	r.c.forget(r)
	r.end(nil)
	r.c.mu.Lock()
	cn := r.c.live
	r.c.mu.Unlock()
	if cn == nil {
		return nil
	}
	_, err := cn.request(ctx, r.c.ref.Add(1), &out{T: proto.TLeave, Room: r.name})
	if e, ok := err.(*Error); ok && e.Code == string(proto.CodeNotJoined) {
		err = nil
	}
	return err
}

// end ends the room with err: done first (a blocked hand-over gives up),
// then the channel. Any goroutine.
func (r *Room) end(err error) {
	r.once.Do(func() {
		r.st.Lock()
		r.err = err
		r.st.Unlock()
		close(r.done)
		r.mu.Lock()
		r.closed = true
		close(r.events)
		r.mu.Unlock()
	})
}

// push hands ev over, waiting while the channel is full, until the room
// or the client ends. Reader only.
func (r *Room) push(ev Event) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	select {
	case r.events <- ev:
		return true
	case <-r.done:
	case <-r.c.ctx.Done():
	}
	return false
}

// joined handles the room's joined: a presence snapshot, a gap if the
// relay could not resume, then the history not handed over yet. Reader
// only.
func (r *Room) joined(f *in) {
	r.st.Lock()
	var gap *Gap
	switch {
	case !r.resume || !f.Gap && (f.Epoch == "" || r.epoch == "" || f.Epoch == r.epoch):
		// a fresh join, or a resume the relay could serve
	case r.epoch != "" && f.Epoch != r.epoch, f.Seq < r.last:
		// new history, or a relay behind our position: seqs start again
		gap = &Gap{Room: r.name, From: r.last + 1, Reason: GapEpoch, Epoch: f.Epoch}
		r.last = 0
	default:
		to := f.Seq
		if len(f.History) > 0 {
			to = f.History[0].Seq - 1
		}
		if to > r.last {
			gap = &Gap{Room: r.name, From: r.last + 1, To: to, Reason: GapAgedOut, Epoch: f.Epoch}
		}
	}
	r.epoch, r.resume, r.hasJoined = f.Epoch, true, true
	r.info = JoinInfo{Seq: f.Seq, Epoch: f.Epoch, Count: f.Count, Members: f.Members}
	r.st.Unlock()

	r.push(&Presence{Room: r.name, Count: f.Count, Members: f.Members})
	if gap != nil {
		r.push(gap)
	}
	r.batch(f.History)
	r.st.Lock()
	r.last = max(r.last, f.Seq)
	r.st.Unlock()
}

// batch hands over the messages not handed over yet, in seq order.
// Reader only.
func (r *Room) batch(msgs []proto.Message) {
	for i := range msgs {
		m := &msgs[i]
		r.st.Lock()
		fresh, epoch := m.Seq > r.last, r.epoch
		r.st.Unlock()
		if !fresh {
			continue
		}
		ev := &Message{Room: r.name, Seq: m.Seq, Epoch: epoch, TS: m.TS, From: m.From, Name: m.Name,
			Body: m.Body, Badges: m.Badges, Meta: m.Meta}
		if !r.push(ev) {
			return
		}
		r.st.Lock()
		r.last = m.Seq
		r.st.Unlock()
	}
}
