package seal

import (
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/shoalnet/shoal/transfer/manifest"
	"golang.org/x/crypto/chacha20poly1305"
)

// Overhead is the number of bytes a segment grows by when sealed: the
// 16-byte Poly1305 tag. Each ciphertext chunk holds chunkSize-Overhead
// bytes of plaintext.
const Overhead = chacha20poly1305.Overhead

// adPrefix starts the additional data of every segment; it names the format
// and its version.
const adPrefix = "shoal-seal/1\x00"

var (
	// ErrWrongKey means the first segment checked did not authenticate:
	// most likely the key is not this share's (or, for a single-file share,
	// the name given is not the share's name); less likely that chunk is
	// damaged. See the package documentation.
	ErrWrongKey = errors.New("seal: the key does not match this share")
	// ErrDamaged means ciphertext failed authentication, or has a length no
	// plaintext produces, after the key was known to be right: the data was
	// altered, cut or reordered. Fetch the share again from other peers or
	// ask the publisher.
	ErrDamaged = errors.New("seal: encrypted data is damaged")
	// ErrUnsupported marks a file that is neither a regular file nor a
	// directory (symbolic link, device, socket, named pipe).
	ErrUnsupported = errors.New("seal: unsupported file type")
)

// layout is the segment geometry for one chunk size: c bytes of ciphertext
// and p = c - Overhead bytes of plaintext a segment. Exported functions
// accept only the chunk sizes of the manifest format; tests and fuzz
// targets use smaller ones.
type layout struct{ c, p int64 }

// newLayout checks a chunk size (0 means manifest.DefaultChunkSize) and
// returns its layout.
func newLayout(chunkSize int64) (layout, error) {
	if chunkSize == 0 {
		chunkSize = manifest.DefaultChunkSize
	}
	if chunkSize < manifest.MinChunkSize || chunkSize > manifest.MaxChunkSize || chunkSize&(chunkSize-1) != 0 {
		return layout{}, fmt.Errorf("seal: chunk size %d is not a power of two between %d and %d",
			chunkSize, manifest.MinChunkSize, manifest.MaxChunkSize)
	}
	return layout{c: chunkSize, p: chunkSize - Overhead}, nil
}

// segments returns the number of segments of a plaintext of n >= 0 bytes.
func (l layout) segments(n int64) int64 {
	s := n / l.p
	if n%l.p != 0 {
		s++
	}
	return s
}

// cipherSize returns the ciphertext length of a plaintext of n bytes, or
// false if n is negative or the result does not fit in an int64.
func (l layout) cipherSize(n int64) (int64, bool) {
	if n < 0 {
		return 0, false
	}
	extra := l.segments(n) * Overhead
	if n > math.MaxInt64-extra {
		return 0, false
	}
	return n + extra, true
}

// plainSize returns the plaintext length of a ciphertext of n bytes.
func (l layout) plainSize(n int64) (int64, error) {
	if n < 0 {
		return 0, fmt.Errorf("%w: negative ciphertext length %d", ErrDamaged, n)
	}
	full, rest := n/l.c, n%l.c
	if rest > 0 && rest <= Overhead {
		return 0, fmt.Errorf("%w: %d bytes is not a possible ciphertext length with chunk size %d "+
			"(its last chunk would be %d bytes, but a sealed segment has at least %d): the file was cut or extended",
			ErrDamaged, n, l.c, rest, Overhead+1)
	}
	if rest > 0 {
		full++
	}
	return n - full*Overhead, nil
}

// CipherSize returns the length of the ciphertext of a file of plain bytes
// encrypted with chunk size chunkSize (0 means the default, 1 MiB): plain
// plus 16 bytes for every started chunk of chunkSize-16 plaintext bytes. It
// returns -1 if plain is negative, chunkSize is not a valid chunk size (a
// power of two from 256 KiB to 16 MiB), or the result overflows an int64.
func CipherSize(plain, chunkSize int64) int64 {
	l, err := newLayout(chunkSize)
	if err != nil {
		return -1
	}
	n, ok := l.cipherSize(plain)
	if !ok {
		return -1
	}
	return n
}

// PlainSize returns the length of the plaintext of a ciphertext file of
// cipher bytes encrypted with chunk size chunkSize (0 means the default).
// It fails if chunkSize is not a valid chunk size, and with an error
// wrapping ErrDamaged if no plaintext encrypts to that length (a negative
// length, or a last chunk of 1 to 16 bytes).
func PlainSize(cipher, chunkSize int64) (int64, error) {
	l, err := newLayout(chunkSize)
	if err != nil {
		return 0, err
	}
	return l.plainSize(cipher)
}

// newAEAD returns the XChaCha20-Poly1305 AEAD of a key.
func newAEAD(k Key) (cipher.AEAD, error) {
	aead, err := chacha20poly1305.NewX(k[:])
	if err != nil {
		// Only FIPS 140-only mode gets here: the key length is right.
		return nil, fmt.Errorf("seal: %w", err)
	}
	return aead, nil
}

// codec seals and opens the segments of one file. It is safe for
// concurrent use.
type codec struct {
	aead   cipher.AEAD
	path   string
	prefix [16]byte // the first 16 bytes of every nonce: SHA-256(path)
	adMid  []byte   // additional data of every segment but the last
	adLast []byte   // additional data of the last segment
}

// newCodec returns the codec of the file at path in the share.
func newCodec(aead cipher.AEAD, path string) *codec {
	sum := sha256.Sum256([]byte(path))
	c := &codec{aead: aead, path: path}
	copy(c.prefix[:], sum[:16])
	ad := make([]byte, 0, len(adPrefix)+len(path)+2)
	ad = append(append(append(ad, adPrefix...), path...), 0)
	c.adMid = append(ad[:len(ad):len(ad)], 0)
	c.adLast = append(ad[:len(ad):len(ad)], 1)
	return c
}

// nonce returns the nonce of segment i.
func (c *codec) nonce(i int64) [chacha20poly1305.NonceSizeX]byte {
	var n [chacha20poly1305.NonceSizeX]byte
	copy(n[:], c.prefix[:])
	binary.BigEndian.PutUint64(n[16:], uint64(i))
	return n
}

func (c *codec) ad(last bool) []byte {
	if last {
		return c.adLast
	}
	return c.adMid
}

// seal appends the sealed segment i of plaintext pt to dst. dst and pt must
// not overlap.
func (c *codec) seal(dst, pt []byte, i int64, last bool) []byte {
	n := c.nonce(i)
	return c.aead.Seal(dst, n[:], pt, c.ad(last))
}

// open appends the plaintext of sealed segment i, ct, to dst, or returns an
// error (see authError). dst and ct must not overlap, so that ct is intact
// for diagnosis when it fails.
func (c *codec) open(dst, ct []byte, i int64, last, first bool) ([]byte, error) {
	n := c.nonce(i)
	pt, err := c.aead.Open(dst, n[:], ct, c.ad(last))
	if err != nil {
		return nil, c.authError(ct, i, last, first)
	}
	return pt, nil
}

// authError explains why sealed segment i, ct, failed to open. first tells
// whether it is the first segment opened with this key, which decides
// between ErrWrongKey and ErrDamaged (see the package documentation).
func (c *codec) authError(ct []byte, i int64, last, first bool) error {
	if !first {
		return fmt.Errorf("%w: %s: chunk %d fails authentication: fetch the share again or ask the publisher",
			ErrDamaged, c.path, i)
	}
	n := c.nonce(i)
	if _, err := c.aead.Open(nil, n[:], ct, c.ad(!last)); err == nil {
		what := "cut short at a chunk boundary"
		if !last {
			what = "extended past its last chunk"
		}
		return fmt.Errorf("%w: %s was %s: fetch the share again or ask the publisher", ErrDamaged, c.path, what)
	}
	return fmt.Errorf("%w: the first chunk of %s does not decrypt with this key "+
		"(check that the key after '#' is the one published with this share, and for a single file the share's name; "+
		"if it is, that chunk is damaged)", ErrWrongKey, c.path)
}
