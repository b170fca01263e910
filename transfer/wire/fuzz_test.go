package wire

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzReader feeds arbitrary bytes to the stream reader: it must never
// panic, never return a payload length over MaxPayload, and every message
// it accepts must re-encode to a frame that decodes to the same message.
func FuzzReader(f *testing.F) {
	for _, m := range sampleMsgs(f) {
		frame, err := Append(nil, &m)
		if err != nil {
			f.Fatal(err)
		}
		if m.Length > 0 {
			frame = append(frame, make([]byte, m.Length)...)
		}
		f.Add(frame)
	}
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{2, byte(TRequest), 0x80})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data), 0)
		for {
			m, err := r.Next()
			if err != nil {
				if err != io.EOF && !errors.Is(err, ErrProtocol) {
					t.Fatalf("unexpected error class: %v", err)
				}
				return
			}
			if m.Length > MaxPayload || len(m.Bits) > MaxBitsBytes || len(m.Text) > MaxText {
				t.Fatalf("limit exceeded: %+v", m)
			}
			again, err := Append(nil, &m)
			if err != nil {
				t.Fatalf("re-encode %+v: %v", m, err)
			}
			m2, err := NewReader(bytes.NewReader(again), 0).Next()
			if err != nil || m2.Type != m.Type || m2.Index != m.Index || m2.Offset != m.Offset || m2.ID != m.ID ||
				m2.Length != m.Length || m2.Text != m.Text || !bytes.Equal(m2.Bits, m.Bits) ||
				!m2.Root.Equals(m.Root) || !m2.CID.Equals(m.CID) || m2.Trace != m.Trace {
				t.Fatalf("re-decode: %+v vs %+v (%v)", m2, m, err)
			}
			if m.Length > 0 {
				if err := r.Discard(); err != nil {
					return
				}
			}
		}
	})
}

// FuzzDecode fuzzes the frame body decoder on its own.
func FuzzDecode(f *testing.F) {
	for _, m := range sampleMsgs(f) {
		frame, _ := Append(nil, &m)
		f.Add(frame[1:])
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := Decode(body)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error does not wrap ErrProtocol: %v", err)
			}
			return
		}
		if _, err := Append(nil, &m); err != nil {
			t.Fatalf("decoded message does not encode: %+v: %v", m, err)
		}
	})
}
