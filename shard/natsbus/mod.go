package natsbus

import (
	"context"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Moderation state that outlives messages (bans, timeouts, slow mode) lives
// in a KV bucket, Config.Stream + "_MOD": keys "ban.<room>.<user>",
// "mute.<room>.<user>" (its value the end, unix milliseconds; the key has a
// TTL) and "slow.<room>" (its value seconds), room and user in unpadded
// base64url. Every node watches the whole bucket.

// ModKind is a kind of moderation state.
type ModKind string

// Kinds of moderation state.
const (
	ModBan  ModKind = "ban"
	ModMute ModKind = "mute"
	ModSlow ModKind = "slow"
)

// ModEvent is one change of moderation state.
type ModEvent struct {
	Kind  ModKind
	Room  string
	User  string        // ban, mute
	Set   bool          // false: lifted
	Until time.Time     // mute: when it ends
	Slow  time.Duration // slow: the least time between two messages of a user
}

var keyEnc = base64.RawURLEncoding

func (e *ModEvent) key() string {
	k := string(e.Kind) + "." + keyEnc.EncodeToString([]byte(e.Room))
	if e.Kind != ModSlow {
		k += "." + keyEnc.EncodeToString([]byte(e.User))
	}
	return k
}

// parseModKey reads a key back into an event (without its value).
func parseModKey(key string) (ModEvent, bool) {
	parts := strings.Split(key, ".")
	if len(parts) < 2 {
		return ModEvent{}, false
	}
	e := ModEvent{Kind: ModKind(parts[0])}
	room, err := keyEnc.DecodeString(parts[1])
	if err != nil {
		return ModEvent{}, false
	}
	e.Room = string(room)
	switch {
	case e.Kind == ModSlow && len(parts) == 2:
		return e, true
	case (e.Kind == ModBan || e.Kind == ModMute) && len(parts) == 3:
		user, err := keyEnc.DecodeString(parts[2])
		e.User = string(user)
		return e, err == nil
	}
	return ModEvent{}, false
}

// openMod finds or creates the moderation bucket.
func (b *Bus) openMod(ctx context.Context) error {
	name := b.cfg.Stream + "_MOD"
	kv, err := b.js.KeyValue(ctx, name)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = b.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: name, Storage: jetstream.FileStorage,
			Replicas: b.cfg.Replicas, LimitMarkerTTL: time.Minute,
			Description: "roomcast bans, timeouts and slow modes"})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = b.js.KeyValue(ctx, name)
		}
	}
	b.kv = kv
	return err
}

// SetModeration stores a change of moderation state for every node (and
// the next start). It does not block: the store is written in the
// background; a failure is logged and counted. Any goroutine.
func (b *Bus) SetModeration(e ModEvent) {
	go func() {
		ctx, cancel := context.WithTimeout(b.ctx, b.cfg.PublishTimeout)
		defer cancel()
		if err := b.storeMod(ctx, e); err != nil {
			b.m.failures.Inc()
			b.log.Warn("cannot store moderation in NATS", "kind", e.Kind, "room", e.Room, "user", e.User, "err", err)
			return
		}
		b.m.modStored.Inc()
	}()
}

func (b *Bus) storeMod(ctx context.Context, e ModEvent) error {
	key := e.key()
	switch {
	case !e.Set:
		return b.kv.Delete(ctx, key)
	case e.Kind == ModBan:
		_, err := b.kv.Put(ctx, key, []byte("1"))
		return err
	case e.Kind == ModSlow:
		_, err := b.kv.Put(ctx, key, []byte(strconv.FormatInt(int64(e.Slow/time.Second), 10)))
		return err
	}
	// A timeout: a key that expires with it. A TTL is set only by Create,
	// so a running timeout is deleted first.
	ttl := max(time.Until(e.Until).Round(time.Second), time.Second)
	val := []byte(strconv.FormatInt(e.Until.UnixMilli(), 10))
	_, err := b.kv.Create(ctx, key, val, jetstream.KeyTTL(ttl))
	if errors.Is(err, jetstream.ErrKeyExists) {
		if err = b.kv.Delete(ctx, key); err == nil {
			_, err = b.kv.Create(ctx, key, val, jetstream.KeyTTL(ttl))
		}
	}
	return err
}

// WatchModeration calls fn with every moderation state stored (at start)
// and every change after, on one goroutine, until Close; it retries while
// NATS is unreachable.
func (b *Bus) WatchModeration(fn func(ModEvent)) {
	go func() {
		wait := b.cfg.ReconnectWait
		for b.ctx.Err() == nil {
			err := b.watchMod(fn)
			if b.ctx.Err() != nil {
				return
			}
			b.log.Warn("moderation watch stopped", "err", err)
			select {
			case <-b.ctx.Done():
			case <-time.After(wait):
			}
			wait = min(2*wait, 5*time.Second)
		}
	}()
}

func (b *Bus) watchMod(fn func(ModEvent)) error {
	w, err := b.kv.WatchAll(b.ctx)
	if err != nil {
		return err
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-b.ctx.Done():
			return nil
		case ent, ok := <-w.Updates():
			if !ok {
				return errors.New("natsbus: moderation watch closed")
			}
			if ent == nil {
				continue // the stored state was delivered; changes follow
			}
			if e, ok := modEvent(ent); ok {
				fn(e)
			}
		}
	}
}

// modEvent reads a bucket entry.
func modEvent(ent jetstream.KeyValueEntry) (ModEvent, bool) {
	e, ok := parseModKey(ent.Key())
	if !ok {
		return e, false
	}
	e.Set = ent.Operation() == jetstream.KeyValuePut
	if !e.Set {
		return e, true
	}
	n, err := strconv.ParseInt(string(ent.Value()), 10, 64)
	switch {
	case e.Kind == ModMute && err == nil:
		e.Until = time.UnixMilli(n)
	case e.Kind == ModSlow && err == nil:
		e.Slow = time.Duration(n) * time.Second
	case e.Kind != ModBan:
		return e, false
	}
	return e, true
}
