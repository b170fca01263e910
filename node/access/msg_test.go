package access

import (
	"bufio"
	"bytes"
	"testing"
)

func FuzzReadMsg(f *testing.F) {
	var buf bytes.Buffer
	WriteMsg(&buf, Msg{Token: []byte{1, 2, 3}, Revs: [][]byte{{4}, {5, 6}}, Err: "no token"})
	f.Add(buf.Bytes())
	f.Add([]byte{0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ReadMsg(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := WriteMsg(&out, m); err != nil {
			t.Fatal(err)
		}
		back, err := ReadMsg(bufio.NewReader(&out))
		if err != nil || back.Err != m.Err || len(back.Revs) != len(m.Revs) || !bytes.Equal(back.Token, m.Token) {
			t.Fatalf("does not round-trip: %v", err)
		}
	})
}
