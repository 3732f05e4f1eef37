package proto

import (
	"testing"
)

// A message kept as msgpack transcodes to exactly what encoding it in the
// other formats gives; SSE ids carry the epoch.
func TestTranscode(t *testing.T) {
	enc := NewEncoder()
	msgs := []*Message{
		{Seq: 7, TS: 1_700_000_000_000, From: "u1", Name: "Ann", Body: "héllo \"quoted\"\n<b>"},
		{Seq: 8, TS: 1, From: "u2", Body: "b", Badges: []string{"mod"}, Meta: map[string]string{"k": "v", "emoji": "😀"}},
	}
	for _, m := range msgs {
		mp, err := enc.MessagePayload(Msgpack, "ep0ch", m)
		if err != nil {
			t.Fatal(err)
		}
		mp = append([]byte(nil), mp...)
		for _, f := range []Format{Msgpack, JSON, SSE} {
			want, err := enc.MessagePayload(f, "ep0ch", m)
			if err != nil {
				t.Fatal(err)
			}
			want = append([]byte(nil), want...)
			if f == Msgpack {
				// The kept payload itself: encoding meta again may order
				// its keys otherwise (Go map order).
				want = mp
			}
			got, err := enc.Transcode(f, "ep0ch", mp)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Errorf("seq %d in %v: transcoded %q, want %q", m.Seq, f, got, want)
			}
		}
	}
	if _, err := enc.Transcode(JSON, "", []byte{0xc1}); err == nil {
		t.Errorf("transcoding bad msgpack: no error")
	}
}

func TestSSEMessageID(t *testing.T) {
	enc := NewEncoder()
	m := &Message{Seq: 42, TS: 1, From: "u", Body: "b"}
	f := func(epoch, want string) {
		t.Helper()
		b, err := enc.MessagePayload(SSE, epoch, m)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(b); len(got) < len(want) || got[:len(want)] != want {
			t.Errorf("SSE message with epoch %q: %q, want it to start %q", epoch, got, want)
		}
	}
	f("abcd2345", "id: abcd2345:42\nevent: msg\ndata: {")
	f("", "id: 42\nevent: msg\ndata: {")
	b, _ := enc.Payload(SSE, m) // without an epoch: the bare seq, as before
	if string(b[:len("id: 42\n")]) != "id: 42\n" {
		t.Errorf("Payload(SSE): %q", b)
	}
}
