package proto

import "github.com/vmihailenco/msgpack/v5"

// EncodeMsgpack writes joined as msgpack's reflection would (a map in field
// order, omitempty fields left out, compact ints as the Encoder is set up),
// without reflection's checks of the omitempty fields, which allocate: the
// joined frame is part of every handshake-and-join. TestJoinedMsgpackAsReflection
// holds the two to the same bytes.
func (j *Joined) EncodeMsgpack(e *msgpack.Encoder) error {
	n := 6 // t, room, seq, history, gap, count
	if j.Ref != 0 {
		n++
	}
	if j.Epoch != "" {
		n++
	}
	if len(j.Members) > 0 {
		n++
	}
	if err := e.EncodeMapLen(n); err != nil {
		return err
	}
	str := func(k, v string) error {
		if err := e.EncodeString(k); err != nil {
			return err
		}
		return e.EncodeString(v)
	}
	if err := str("t", j.T); err != nil {
		return err
	}
	if j.Ref != 0 {
		if err := e.EncodeString("ref"); err != nil {
			return err
		}
		if err := e.EncodeUint(j.Ref); err != nil {
			return err
		}
	}
	if err := str("room", j.Room); err != nil {
		return err
	}
	if err := e.EncodeString("seq"); err != nil {
		return err
	}
	if err := e.EncodeUint(j.Seq); err != nil {
		return err
	}
	if j.Epoch != "" {
		if err := str("epoch", j.Epoch); err != nil {
			return err
		}
	}
	return j.encodeTail(e)
}

// encodeTail writes history, gap, count and members.
func (j *Joined) encodeTail(e *msgpack.Encoder) error {
	if err := e.EncodeString("history"); err != nil {
		return err
	}
	if err := e.Encode(j.History); err != nil {
		return err
	}
	if err := e.EncodeString("gap"); err != nil {
		return err
	}
	if err := e.EncodeBool(j.Gap); err != nil {
		return err
	}
	if err := e.EncodeString("count"); err != nil {
		return err
	}
	if err := e.EncodeInt(int64(j.Count)); err != nil {
		return err
	}
	if len(j.Members) == 0 {
		return nil
	}
	if err := e.EncodeString("members"); err != nil {
		return err
	}
	if err := e.EncodeArrayLen(len(j.Members)); err != nil {
		return err
	}
	for _, m := range j.Members {
		if err := e.EncodeMapLen(2); err != nil {
			return err
		}
		if err := e.EncodeString("id"); err != nil {
			return err
		}
		if err := e.EncodeString(m.ID); err != nil {
			return err
		}
		if err := e.EncodeString("name"); err != nil {
			return err
		}
		if err := e.EncodeString(m.Name); err != nil {
			return err
		}
	}
	return nil
}
