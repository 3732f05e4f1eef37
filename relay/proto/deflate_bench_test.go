package proto

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// chatVocabulary is words of stream chat, for messages that compress as
// real chat does (not as repeated bytes).
var chatVocabulary = strings.Fields(`gg wp lol lmao pog poggers kekw that was close no way nice shot who is
streaming next again what a play did you see it clip that haha he missed the jump hello from Berlin first time
here love the stream can you play the song from yesterday please the boss fight is so hard today I think we need
more healing the tank should pull slower chat is moving fast mods are asleep what is the build for this character
how many hours in this game already I have been watching since the start of the stream great music choice this
level looks amazing with the new patch rip the run was going so well maybe next time try going left at the fork
is this the new update when is the next giveaway thanks for the raid welcome raiders hype hype hype 100 200 500 :)
:D <3 xD omg wow nice`)

// chatMessages returns n chat messages of about size bytes of body each,
// from 40 users, the same for every run.
func chatMessages(n, size int) []Message {
	r := rand.New(rand.NewPCG(1, 2))
	out := make([]Message, n)
	for i := range out {
		var b strings.Builder
		for b.Len() < size {
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(chatVocabulary[r.IntN(len(chatVocabulary))])
		}
		u := r.IntN(40)
		out[i] = Message{Seq: uint64(1000 + i), TS: time.Date(2026, 12, 1, 20, 0, 0, 0, time.UTC).UnixMilli() + int64(i*37),
			From: fmt.Sprintf("user-%d", u), Name: fmt.Sprintf("Viewer%d", u), Body: b.String()[:size]}
	}
	return out
}

// batchFrame encodes msgs as one batch frame of room stream:bench.
func batchFrame(b testing.TB, f Format, msgs []Message) []byte {
	enc := NewEncoder()
	var payloads [][]byte
	for i := range msgs {
		p, err := enc.MessagePayload(f, "abcdefgh", &msgs[i])
		if err != nil {
			b.Fatal(err)
		}
		payloads = append(payloads, append([]byte(nil), p...))
	}
	return append([]byte(nil), enc.Batch(f, "stream:bench", payloads)...)
}

// BenchmarkDeflateBatch compresses one batch frame of chat messages (100
// bytes of body each) as a flight does, once for all its members: ns/op is
// the CPU of that one compression; plain-B/msg and deflate-B/msg are the
// bytes each member receives per message without and with compression.
func BenchmarkDeflateBatch(b *testing.B) {
	for _, f := range []Format{Msgpack, JSON} {
		for _, n := range []int{1, 10, 100} {
			name := "msgpack"
			if f == JSON {
				name = "json"
			}
			b.Run(fmt.Sprintf("%s/batch=%d", name, n), func(b *testing.B) {
				frame := batchFrame(b, f, chatMessages(n, 100))
				d := NewDeflater()
				var dst []byte
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					dst = d.AppendFrame(dst[:0], frame)
				}
				b.StopTimer()
				b.ReportMetric(float64(len(frame))/float64(n), "plain-B/msg")
				b.ReportMetric(float64(len(dst))/float64(n), "deflate-B/msg")
				b.ReportMetric(float64(len(dst))/float64(len(frame)), "ratio")
			})
		}
	}
}

// BenchmarkInflateMessage inflates one compressed client message (a send
// of 100 bytes of chat, msgpack), as the relay does for a browser.
func BenchmarkInflateMessage(b *testing.B) {
	enc := NewEncoder()
	m := chatMessages(1, 100)[0]
	p, _ := enc.Payload(Msgpack, &Command{T: TSend, Ref: 7, Room: "stream:bench", Body: m.Body})
	z := append([]byte(nil), NewDeflater().Deflate(p)...)
	in := NewInflater()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := in.Inflate(z, 64<<10); err != nil {
			b.Fatal(err)
		}
	}
}
