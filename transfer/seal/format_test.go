package seal

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"
)

func TestSizes(t *testing.T) {
	for _, c := range []int64{256 * kib, 1 * mib, 16 * mib} {
		p := c - Overhead
		cases := []struct{ plain, cipher int64 }{
			{0, 0},
			{1, 17},
			{p - 1, c - 1},
			{p, c},
			{p + 1, c + 17},
			{3*p + 5, 3*c + 21},
		}
		for _, tc := range cases {
			if got := CipherSize(tc.plain, c); got != tc.cipher {
				t.Errorf("CipherSize(%d, %d) = %d, want %d", tc.plain, c, got, tc.cipher)
			}
			if got, err := PlainSize(tc.cipher, c); err != nil || got != tc.plain {
				t.Errorf("PlainSize(%d, %d) = %d, %v; want %d", tc.cipher, c, got, err, tc.plain)
			}
		}
		// Every plaintext size round-trips, and exactly the ciphertext
		// sizes it produces are accepted.
		produced := map[int64]bool{}
		for _, base := range []int64{0, p, 7 * p, 1 << 40} {
			for d := int64(-40); d <= 40; d++ {
				n := base + d
				if n < 0 {
					continue
				}
				cs := CipherSize(n, c)
				produced[cs] = true
				back, err := PlainSize(cs, c)
				if err != nil || back != n {
					t.Fatalf("PlainSize(CipherSize(%d)) = %d, %v", n, back, err)
				}
			}
		}
		for _, base := range []int64{0, c, 7 * c, CipherSize(1<<40, c)} {
			for d := int64(-40); d <= 40; d++ {
				n := base + d
				if n < 0 {
					continue
				}
				_, err := PlainSize(n, c)
				rest := n % c
				if impossible := rest > 0 && rest <= Overhead; impossible != (err != nil) {
					t.Fatalf("PlainSize(%d, %d): err = %v, but last chunk is %d bytes", n, c, err, rest)
				}
				if err != nil && !errors.Is(err, ErrDamaged) {
					t.Fatalf("PlainSize(%d) error does not wrap ErrDamaged: %v", n, err)
				}
			}
		}
	}
}

func TestSizesBad(t *testing.T) {
	for _, c := range []int64{-1, 1, 16, 17, 128 * kib, 256*kib + 1, 3 * mib, 32 * mib} {
		if got := CipherSize(10, c); got != -1 {
			t.Errorf("CipherSize with chunk size %d = %d, want -1", c, got)
		}
		if _, err := PlainSize(10, c); err == nil {
			t.Errorf("PlainSize with chunk size %d succeeded", c)
		}
	}
	if got := CipherSize(-1, mib); got != -1 {
		t.Errorf("CipherSize(-1) = %d, want -1", got)
	}
	if got := CipherSize(math.MaxInt64-10, mib); got != -1 {
		t.Errorf("CipherSize(MaxInt64-10) = %d, want -1 (overflow)", got)
	}
	if got := CipherSize(100, 0); got != 116 {
		t.Errorf("CipherSize(100, default) = %d, want 116", got)
	}
	for _, n := range []int64{-1, 1, 16, mib + 16, math.MaxInt64/mib*mib + 5} {
		if _, err := PlainSize(n, mib); !errors.Is(err, ErrDamaged) {
			t.Errorf("PlainSize(%d) = %v, want ErrDamaged", n, err)
		}
	}
}

// TestFormat checks the codec against the format as the package
// documentation writes it, computed here independently.
func TestFormat(t *testing.T) {
	k := testKey(1)
	aead, err := chacha20poly1305.NewX(k[:])
	if err != nil {
		t.Fatal(err)
	}
	const path = "sub/a.bin"
	c := mustCodec(t, k, path)
	pt := []byte("hello, shoal")
	for _, i := range []int64{0, 1, 1 << 40} {
		for _, last := range []bool{false, true} {
			sum := sha256.Sum256([]byte(path))
			nonce := append(sum[:16:16], make([]byte, 8)...)
			binary.BigEndian.PutUint64(nonce[16:], uint64(i))
			ad := []byte("shoal-seal/1\x00" + path + "\x00")
			if last {
				ad = append(ad, 1)
			} else {
				ad = append(ad, 0)
			}
			want := aead.Seal(nil, nonce, pt, ad)
			if got := c.seal(nil, pt, i, last); !bytes.Equal(got, want) {
				t.Fatalf("segment %d last=%v: codec gives %x, format says %x", i, last, got, want)
			}
		}
	}
}

// TestKnownAnswer pins version 1 of the format: a change here breaks every
// encrypted share already published.
func TestKnownAnswer(t *testing.T) {
	c := mustCodec(t, testKey(1), "a.txt")
	got := hex.EncodeToString(c.seal(nil, []byte("hello"), 0, true))
	const want = "7b00669d90453d421e5037b2480e480e40937f1760"
	if got != want {
		t.Fatalf("sealed segment = %s, want %s", got, want)
	}
}

func TestCodecRejects(t *testing.T) {
	c := mustCodec(t, testKey(1), "a")
	ct := c.seal(nil, []byte("data"), 3, false)
	if _, err := c.open(nil, ct, 3, false, false); err != nil {
		t.Fatalf("open: %v", err)
	}
	other := mustCodec(t, testKey(1), "b")
	wrongKey := mustCodec(t, testKey(2), "a")
	cases := []struct {
		name string
		open func() error
		want error
	}{
		{"other index", func() error { _, err := c.open(nil, ct, 4, false, false); return err }, ErrDamaged},
		{"other path", func() error { _, err := other.open(nil, ct, 3, false, false); return err }, ErrDamaged},
		{"wrong key, first", func() error { _, err := wrongKey.open(nil, ct, 3, false, true); return err }, ErrWrongKey},
		{"last flag, first", func() error { _, err := c.open(nil, ct, 3, true, true); return err }, ErrDamaged},
		{"last flag", func() error { _, err := c.open(nil, ct, 3, true, false); return err }, ErrDamaged},
		{"short", func() error { _, err := c.open(nil, ct[:10], 3, false, true); return err }, ErrWrongKey},
	}
	for _, tc := range cases {
		if err := tc.open(); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}
