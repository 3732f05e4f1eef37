package relay

import (
	"fmt"
	"strings"
	"time"

	"github.com/roomcast/roomcast/ratelimit"
	"github.com/roomcast/roomcast/shard"
)

// RateLimit is a token bucket: Rate tokens per second, Burst at most.
type RateLimit struct {
	Rate  float64 `yaml:"rate"`
	Burst int     `yaml:"burst"`
}

// Namespace is the policy of every room of one namespace (the part of a
// room name before the first ':'). In Config.Namespaces, the key "default"
// applies to namespaces not listed; a nil field of a listed namespace takes
// the value of "default", then the built-in default noted here.
type Namespace struct {
	History       *int                 `yaml:"history"`         // messages kept per room; built-in: Config.History
	AnonymousRead *bool                `yaml:"anonymous_read"`  // anonymous viewers may join; built-in true
	MemberList    *bool                `yaml:"member_list"`     // list members in joined and presence; built-in true
	MemberListMax *int                 `yaml:"member_list_max"` // ...while the room has at most this many connections; built-in 100
	MaxMembers    *int                 `yaml:"max_members"`     // connections per room, then room_full; built-in 0 (no limit)
	SlowMode      *int                 `yaml:"slow_mode"`       // seconds between a user's messages in one room (mods, admins, bots exempt); built-in 0 (off)
	RateLimits    map[string]RateLimit `yaml:"rate_limits"`     // send limits by role (user, mod, admin, bot); built-in: see defaultRates

	// FlushInterval: an idle room waits up to this long for more messages
	// before it writes them, so a busy room writes fewer, bigger batches
	// (e.g. "50ms"; at most maxFlushInterval). Built-in 0: a room writes
	// as soon as it is idle.
	FlushInterval *time.Duration `yaml:"flush_interval"`
	// FlushAuto makes the window grow with the room: autoFlushPerMember
	// per connection joined, at most FlushInterval, which it needs as its
	// latency budget. Built-in false.
	FlushAuto *bool `yaml:"flush_auto"`

	// MemberListViewers: anonymous viewers get member lists too; when
	// false their joined has no members and their presence only a count.
	// Built-in true.
	MemberListViewers *bool `yaml:"member_list_viewers"`

	// Whispers: in the inbox namespace (Config.InboxNamespace), users other
	// than an inbox's owner may send into it without joining. Off leaves
	// inboxes to the backend (admin API). Built-in true.
	Whispers *bool `yaml:"whispers"`
	// PublishHook asks a backend before each message sent by a client in
	// this namespace is sequenced (see hook.go); built-in none.
	PublishHook *PublishHook `yaml:"publish_hook"`
}

// maxFlushInterval bounds Namespace.FlushInterval: a window is a latency
// every message pays.
const maxFlushInterval = time.Second

// autoFlushPerMember is the window per connection of a room with
// flush_auto: a room of n members flushes at most 1/(n*10us) times a
// second, so it writes at most 100 000 member frames a second (a 5 000
// member room waits 50ms, a room of 10 waits 100us).
const autoFlushPerMember = 10 * time.Microsecond

// Roles that send, in the order of policy.rates.
var sendRoles = []string{roleUser.String(), roleMod.String(), roleAdmin.String(), roleBot.String()}

// rateIndex is the index in policy.rates of the role named role; 0 for
// an unknown one.
func rateIndex(role string) int {
	for i, r := range sendRoles {
		if r == role {
			return i
		}
	}
	return 0
}

// defaultRates are the built-in send limits, modelled on large chat
// services: 20 messages per 30 seconds for a user, 100 for a mod or admin;
// bots are trusted services.
func defaultRates(cfg *Config) []RateLimit {
	return []RateLimit{
		{Rate: cfg.SendRate, Burst: cfg.SendBurst},
		{Rate: 100.0 / 30, Burst: 100},
		{Rate: 100.0 / 30, Burst: 100},
		{Rate: 50, Burst: 200},
	}
}

// policy is a namespace's resolved policy. Static after New.
type policy struct {
	shard   shard.Policy
	rates   []ratelimit.Limits // by roleIndex
	limiter *ratelimit.Limiter // send buckets by user id

	whispers bool         // Namespace.Whispers
	hook     *publishHook // nil: no publish hook
}

// policies resolves Config.Namespaces. Namespaces that set their own rate
// limits get their own buckets; the others share the default's.
type policies struct {
	def   *policy
	by    map[string]*policy
	rates *ratelimit.Limiter
}

func newPolicies(cfg *Config) (*policies, error) {
	ps := &policies{by: map[string]*policy{}, rates: ratelimit.New()}
	base := cfg.Namespaces["default"]
	def, err := ps.resolve(cfg, Namespace{}, base, "default")
	if err != nil {
		return nil, err
	}
	ps.def = def
	for name, ns := range cfg.Namespaces {
		if name == "default" {
			continue
		}
		if p, err := ps.resolve(cfg, base, ns, name); err != nil {
			return nil, err
		} else {
			ps.by[name] = p
		}
	}
	return ps, nil
}

// get returns the policy of namespace ns. Any goroutine.
func (ps *policies) get(ns string) *policy {
	if p := ps.by[ns]; p != nil {
		return p
	}
	return ps.def
}

func (ps *policies) resolve(cfg *Config, base, ns Namespace, name string) (*policy, error) {
	p := &policy{limiter: ps.rates}
	p.shard.History = pick(ns.History, base.History, cfg.History)
	if p.shard.History == 0 {
		p.shard.History = -1 // 0 in a policy means none; shard's zero means its default
	}
	p.shard.NoAnonRead = !pick(ns.AnonymousRead, base.AnonymousRead, true)
	p.shard.MemberListMax = pick(ns.MemberListMax, base.MemberListMax, 100)
	if !pick(ns.MemberList, base.MemberList, true) || p.shard.MemberListMax == 0 {
		p.shard.MemberListMax = -1
	}
	p.shard.NoViewerList = !pick(ns.MemberListViewers, base.MemberListViewers, true)
	p.shard.MaxMembers = pick(ns.MaxMembers, base.MaxMembers, 0)
	p.shard.SlowMode = time.Duration(pick(ns.SlowMode, base.SlowMode, 0)) * time.Second
	if p.shard.MaxMembers < 0 || p.shard.SlowMode < 0 {
		return nil, fmt.Errorf("namespace %q: max_members and slow_mode must not be negative", name)
	}
	p.shard.FlushInterval = pick(ns.FlushInterval, base.FlushInterval, 0)
	if p.shard.FlushInterval < 0 || p.shard.FlushInterval > maxFlushInterval {
		return nil, fmt.Errorf("namespace %q: flush_interval must be between 0 and %v", name, maxFlushInterval)
	}
	if pick(ns.FlushAuto, base.FlushAuto, false) {
		if p.shard.FlushInterval == 0 {
			return nil, fmt.Errorf("namespace %q: flush_auto needs flush_interval, its latency budget", name)
		}
		p.shard.FlushPerMember = autoFlushPerMember
	}
	rates := defaultRates(cfg)
	for _, over := range []map[string]RateLimit{base.RateLimits, ns.RateLimits} {
		for role, rl := range over {
			i := rateIndex(role)
			if sendRoles[i] != role || rl.Rate <= 0 || rl.Burst < 1 {
				return nil, fmt.Errorf("namespace %q: rate_limits.%s needs a role of %s, rate > 0 and burst >= 1", name, role, strings.Join(sendRoles, ", "))
			}
			rates[i] = rl
		}
	}
	if len(ns.RateLimits) > 0 && name != "default" {
		p.limiter = ratelimit.New()
	}
	for _, r := range rates {
		p.rates = append(p.rates, ratelimit.Limits{Rate: r.Rate, Burst: r.Burst})
	}
	p.whispers = pick(ns.Whispers, base.Whispers, true)
	if ph := cmpOr(ns.PublishHook, base.PublishHook); ph != nil {
		h, err := newPublishHook(*ph)
		if err != nil {
			return nil, fmt.Errorf("namespace %q: publish_hook: %w", name, err)
		}
		p.hook = h
	}
	return p, nil
}

// pick returns *a, else *b, else d: a namespace's setting, else the
// default namespace's, else the built-in one.
func pick[T any](a, b *T, d T) T {
	switch {
	case a != nil:
		return *a
	case b != nil:
		return *b
	}
	return d
}

// cmpOr returns a if it is not nil, else b.
func cmpOr[T any](a, b *T) *T {
	if a != nil {
		return a
	}
	return b
}

// sweep reclaims idle buckets of every namespace.
func (ps *policies) sweep(now time.Time) {
	ps.rates.Sweep(now)
	for _, p := range ps.by {
		if p.limiter != ps.rates {
			p.limiter.Sweep(now)
		}
	}
}

// roomAllowed reports whether a token's rooms claim lets its user join room:
// no claim allows all; a pattern ending in '*' matches by prefix.
func roomAllowed(patterns []string, room string) bool {
	if patterns == nil {
		return true
	}
	for _, p := range patterns {
		if pre, ok := strings.CutSuffix(p, "*"); ok && strings.HasPrefix(room, pre) || p == room {
			return true
		}
	}
	return false
}
