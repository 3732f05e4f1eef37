package proto

import (
	"strconv"
)

// The JSON command decoder's fast path: a frame that is valid JSON is
// walked in place, its top-level keys found without a map, plain strings
// (no escapes) and plain non-negative integers taken without
// encoding/json. Everything else (a key with escapes, a value of another
// shape) takes decodeJSONSlow, so both give the same commands and errors.

// jsonFields are the command's keys, in the order decodeJSONSlow reads them.
var jsonFields = [...]string{"t", "ref", "room", "body", "meta", "since", "history", "action", "user", "epoch", "token", "secs", "seq"}

// jsonTop finds the raw value of each known top-level key of the valid JSON
// object b (the last one if a key repeats). It reports false if a key has
// escapes: the caller then takes the slow path.
func jsonTop(b []byte, vals *[len(jsonFields)][]byte) bool {
	i := skipSpace(b, 0) + 1 // past '{'
	for {
		i = skipSpace(b, i)
		if b[i] == '}' {
			return true
		}
		if b[i] == ',' {
			i = skipSpace(b, i+1)
		}
		end := jsonStringEnd(b, i)
		key := b[i+1 : end-1]
		for _, c := range key {
			if c == '\\' {
				return false
			}
		}
		i = skipSpace(b, end) + 1 // past ':'
		i = skipSpace(b, i)
		vend := jsonValueEnd(b, i)
		for f, name := range jsonFields {
			if string(key) == name {
				vals[f] = b[i:vend]
			}
		}
		i = vend
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// jsonStringEnd returns the offset after the valid JSON string at b[i].
func jsonStringEnd(b []byte, i int) int {
	for i++; b[i] != '"'; i++ {
		if b[i] == '\\' {
			i++
		}
	}
	return i + 1
}

// jsonValueEnd returns the offset after the valid JSON value at b[i].
func jsonValueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		return jsonStringEnd(b, i)
	case '{', '[':
		depth := 0
		for ; ; i++ {
			switch b[i] {
			case '"':
				i = jsonStringEnd(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
	}
	for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' ' && b[i] != '\t' && b[i] != '\r' && b[i] != '\n' {
		i++
	}
	return i
}

// jsonStr decodes a string field; known values are taken from known.
func jsonStr(v []byte, dst *string, known []string) bool {
	if len(v) < 2 || v[0] != '"' {
		return false
	}
	s := v[1 : len(v)-1]
	for _, c := range s {
		if c == '\\' {
			return false
		}
	}
	for _, k := range known {
		if string(s) == k {
			*dst = k
			return true
		}
	}
	*dst = string(s)
	return true
}

// jsonNum decodes a plain non-negative integer field.
func jsonNum(v []byte, dst *uint64) bool {
	if len(v) == 0 || v[0] < '0' || v[0] > '9' {
		return false
	}
	n, err := strconv.ParseUint(string(v), 10, 64) // fails on fractions, exponents, overflow: the slow path decides
	if err != nil {
		return false
	}
	*dst = n
	return true
}

// decodeJSONFast decodes b, valid JSON, if every field present has a plain
// shape; it reports false (cmd partly written) if the slow path must.
func decodeJSONFast(b []byte, cmd *Command) bool {
	var vals [len(jsonFields)][]byte
	if !jsonTop(b, &vals) {
		return false
	}
	strs := [...]struct {
		f     int
		dst   *string
		known []string
	}{{0, &cmd.T, commandTypes}, {2, &cmd.Room, nil}, {3, &cmd.Body, nil}, {7, &cmd.Action, AllActions},
		{8, &cmd.User, nil}, {9, &cmd.Epoch, nil}, {10, &cmd.Token, nil}}
	for _, s := range strs {
		if v := vals[s.f]; v != nil && !jsonStr(v, s.dst, s.known) {
			return false
		}
	}
	if vals[4] != nil { // meta: rare in a join
		return false
	}
	var since, history, secs uint64
	nums := [...]struct {
		f   int
		dst *uint64
	}{{1, &cmd.Ref}, {5, &since}, {6, &history}, {11, &secs}, {12, &cmd.Seq}}
	for _, n := range nums {
		if v := vals[n.f]; v != nil && !jsonNum(v, n.dst) {
			return false
		}
	}
	cmd.Secs = int64(min(secs, 1<<40))
	if vals[5] != nil {
		cmd.Since, cmd.HasSince = since, true
	}
	if vals[6] != nil {
		cmd.History, cmd.HasHistory = int(min(history, 1<<30)), true
	}
	return true
}
