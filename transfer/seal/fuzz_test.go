package seal

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/ipfs/go-cid"
)

// FuzzParseLink checks that no link text panics ParseLink, that whatever it
// accepts writes back as an equivalent link, and that its errors about the
// key never repeat the key's text.
func FuzzParseLink(f *testing.F) {
	root := testRoot(f).String()
	key := testKey(0x5a).String()
	for _, s := range []string{
		root, root + "#" + key, " " + root + "#" + key + "\n", root + "#", "#" + key,
		root + "#" + key[:42], root + "##" + key, "bafy#x", "", "#", "\x00#\xff",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, k, err := ParseLink(s)
		if err != nil {
			if k != nil || r.Defined() {
				t.Fatalf("ParseLink(%q) returned a result with its error", s)
			}
			rootText, frag, ok := strings.Cut(strings.TrimSpace(s), "#")
			frag = strings.TrimSpace(frag)
			if _, rerr := cid.Decode(rootText); ok && rerr == nil && len(frag) >= 20 &&
				!strings.ContainsAny(frag, " ") && strings.Contains(err.Error(), frag) {
				t.Fatalf("ParseLink error repeats the key: %v", err)
			}
			return
		}
		var back string
		if k == nil {
			back = r.String()
		} else {
			back = Link(r, *k)
		}
		r2, k2, err := ParseLink(back)
		if err != nil || !r2.Equals(r) || (k == nil) != (k2 == nil) || (k != nil && *k != *k2) {
			t.Fatalf("ParseLink(%q) = %v, %v; its link %q parses as %v, %v, %v", s, r, k, back, r2, k2, err)
		}
	})
}

// FuzzReaderAt checks that a ReaderAt over any ciphertext, of any claimed
// size, never panics, never keeps buffers larger than a segment, and never
// returns bytes that are not the plaintext. With raw false, data is
// encrypted with a small segment size (so inputs span many segments), then
// one bit may be flipped and the claimed size shifted; with raw true, data
// is taken as ciphertext as it is.
func FuzzReaderAt(f *testing.F) {
	f.Add([]byte("hello, world"), uint8(0), int16(0), uint32(1<<31), int64(0), uint16(100), false)
	f.Add([]byte("a longer plaintext that spans several small segments"), uint8(3), int16(0), uint32(1<<31), int64(10), uint16(30), false)
	f.Add([]byte("a longer plaintext that spans several small segments"), uint8(3), int16(-17), uint32(40), int64(1), uint16(200), false)
	f.Add([]byte("raw bytes that are not a ciphertext at all"), uint8(9), int16(0), uint32(0), int64(0), uint16(8), true)
	f.Add([]byte{}, uint8(0), int16(1000), uint32(0), int64(-5), uint16(1), false)
	f.Fuzz(func(t *testing.T, data []byte, seg uint8, delta int16, flip uint32, off int64, n uint16, raw bool) {
		c := int64(Overhead + 1 + int(seg%48))
		l := layout{c: c, p: c - Overhead}
		codec := mustCodec(t, testKey(7), "x/y")
		ct := data
		if !raw {
			ct = sealBytes(l, codec, data)
			if int(flip/8) < len(ct) {
				ct[flip/8] ^= 1 << (flip % 8)
			}
		}
		size := int64(len(ct)) + int64(delta)
		if raw && flip%2 == 1 {
			size = int64(flip) << 31 // sizes far beyond the data
		}
		r, err := newReaderAt(bytes.NewReader(ct), size, codec, l)
		if err != nil {
			return
		}
		buf := make([]byte, n)
		got, err := r.ReadAt(buf, off)
		if got < 0 || got > len(buf) {
			t.Fatalf("ReadAt returned %d for a %d-byte buffer", got, len(buf))
		}
		if got < len(buf) && err == nil {
			t.Fatalf("short read of %d/%d without an error", got, len(buf))
		}
		for _, s := range []*scratch{r.cache, r.spare} {
			if s != nil && (int64(cap(s.ct)) > c || int64(cap(s.pt)) > c) {
				t.Fatalf("buffers of %d and %d bytes for %d-byte segments", cap(s.ct), cap(s.pt), c)
			}
		}
		if raw {
			return
		}
		if got > 0 && (off < 0 || off+int64(got) > int64(len(data)) || !bytes.Equal(buf[:got], data[off:off+int64(got)])) {
			t.Fatalf("ReadAt returned bytes that are not the plaintext")
		}
		intact := delta == 0 && int(flip/8) >= len(ct)
		if intact && off >= 0 && off < int64(len(data)) && (err != nil && err != io.EOF) {
			t.Fatalf("reading intact ciphertext: %v", err)
		}
	})
}
