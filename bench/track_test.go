package bench

import (
	"bytes"
	"io"
	"testing"
)

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

func TestTracker(t *testing.T) {
	type want struct{ received, resumed, lost, dups, gap int64 }
	f := func(name string, run func(*seqTracker), w want) {
		t.Helper()
		var tr seqTracker
		run(&tr)
		got := want{tr.received, tr.resumed, tr.lost, tr.dups, tr.gapMsgs}
		if got != w {
			t.Errorf("%s: got %+v, want %+v", name, got, w)
		}
	}
	obs := func(tr *seqTracker, seqs ...uint64) {
		for _, s := range seqs {
			tr.observe(s)
		}
	}
	f("in order", func(tr *seqTracker) { tr.joined(4, false, false, nil); obs(tr, 5, 6, 7) }, want{received: 3})
	f("before joined", func(tr *seqTracker) { obs(tr, 1, 2) }, want{})
	f("gap", func(tr *seqTracker) { tr.joined(0, false, false, nil); obs(tr, 1, 4, 5) }, want{received: 3, lost: 2})
	f("dup", func(tr *seqTracker) { tr.joined(0, false, false, nil); obs(tr, 1, 2, 2, 1, 3) }, want{received: 3, dups: 2})
	f("resume from history", func(tr *seqTracker) {
		tr.joined(0, false, false, nil)
		obs(tr, 1, 2)
		tr.joined(5, false, true, []uint64{3, 4, 5})
		obs(tr, 6)
	}, want{received: 6, resumed: 3})
	f("resume with gap", func(tr *seqTracker) {
		tr.joined(0, false, false, nil)
		obs(tr, 1)
		tr.joined(9, true, true, []uint64{7, 8, 9})
		obs(tr, 10)
	}, want{received: 5, resumed: 3, gap: 5})
	f("resume with gap and empty history", func(tr *seqTracker) {
		tr.joined(2, false, false, nil)
		tr.joined(9, true, true, nil)
	}, want{gap: 7})
	f("resume short history is loss", func(tr *seqTracker) {
		tr.joined(0, false, false, nil)
		obs(tr, 1)
		tr.joined(5, false, true, []uint64{2, 3})
		obs(tr, 6)
	}, want{received: 4, resumed: 2, lost: 2})
	f("history past joined.seq is left to batches", func(tr *seqTracker) {
		tr.joined(1, false, false, nil)
		tr.joined(3, false, true, []uint64{2, 3, 4})
		obs(tr, 4)
	}, want{received: 3, resumed: 2})
}
