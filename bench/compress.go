package bench

import (
	"errors"
	"sync"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"

	"github.com/roomcast/roomcast/relay/proto"
)

// This file is the bench's side of permessage-deflate (Config.Compress,
// -compress): the offer, inflating the relay's compressed messages, and
// the wire and inflated byte counts of the report.

// deflateOffer is what a -compress client offers: no context takeover
// either way, what the relay answers (relay/proto/PROTOCOL.md, Compression).
var deflateOffer = []httphead.Option{wsflate.Parameters{ServerNoContextTakeover: true, ClientNoContextTakeover: true}.Option()}

// errNoDeflate: the relay declined the offer of a -compress client (the
// relay runs with -compression=false). The dial fails: a run that claims
// to compress must compress. dialCause names it "no_deflate".
var errNoDeflate = errors.New("bench: the relay declined permessage-deflate")

// errBadDeflate: a compressed message did not inflate; counted as a bad
// frame, the connection goes on.
var errBadDeflate = errors.New("bench: a compressed message does not inflate")

// rsv1 is ws.Header.Rsv with RSV1 alone set.
var rsv1 = ws.Rsv(true, false, false)

// inflaters are shared by every member's reader: each holds one only
// while it handles an inflated message, so a run keeps about as many as it
// has reader goroutines running at once, not one per connection.
var inflaters = sync.Pool{New: func() any { return proto.NewInflater() }}

// negotiated reports whether the relay accepted permessage-deflate.
func negotiated(accepted []httphead.Option) bool {
	for _, o := range accepted {
		if string(o.Name) == wsflate.ExtensionName {
			return true
		}
	}
	return false
}

// whole returns a whole data message: inflated if its first frame had
// RSV1. The bytes are valid until the next call of next.
func (f *frameReader) whole(op ws.OpCode, payload []byte) (ws.OpCode, []byte, error) {
	if !f.msgZ {
		return op, payload, nil
	}
	f.infl = inflaters.Get().(*proto.Inflater)
	out, err := f.infl.Inflate(payload, maxFrame)
	if err != nil {
		f.release()
		return op, nil, errBadDeflate
	}
	return op, out, nil
}

// release gives back the inflater of the message returned last.
func (f *frameReader) release() {
	if f.infl != nil {
		inflaters.Put(f.infl)
		f.infl = nil
	}
}

// countWire adds a data message received inside the window to the wire
// and inflated byte counts. Reader goroutine.
func (m *member) countWire(payload []byte, nowNS int64) {
	if m.w.inWindow(nowNS) {
		m.st.add(cWireBytes, int64(m.in.wire))
		m.st.add(cInflatedBytes, int64(len(payload)))
	}
}

// fillWire sets the byte figures of d from the counts s: per delivery
// inside the window; inflated ones only when the clients compress.
func fillWire(d *DeliveryStats, s counts, compress bool) {
	d.WireBytes = s[cWireBytes]
	if s[cDeliveriesWindow] > 0 {
		d.WireBytesPerDelivery = float64(s[cWireBytes]) / float64(s[cDeliveriesWindow])
	}
	if compress {
		d.InflatedBytes = s[cInflatedBytes]
		if s[cDeliveriesWindow] > 0 {
			d.InflatedBytesPerDelivery = float64(s[cInflatedBytes]) / float64(s[cDeliveriesWindow])
		}
	}
}

// wireRow is the table's row of wire bytes per delivery (and inflated
// bytes with compress).
func wireRow(row func(string, string, ...any), r *Report) {
	d := r.Deliveries
	if !r.Config.Compress {
		row("wire bytes", "%.1f per delivery in window (%d in all, plain)", d.WireBytesPerDelivery, d.WireBytes)
		return
	}
	row("wire bytes", "%.1f per delivery in window compressed, %.1f inflated (%.2fx)",
		d.WireBytesPerDelivery, d.InflatedBytesPerDelivery, d.InflatedBytesPerDelivery/max(d.WireBytesPerDelivery, 1e-9))
}
