package manifest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"
	"github.com/ipfs/go-cid"
)

// Blocks are the strict subset of dag-cbor that the builder writes:
// definite lengths, shortest integer and length encodings, text-string map
// keys sorted length-first then byte-wise without duplicates, no floats,
// no null or undefined, and no tags but 42 (a CID link). checkStrict
// enforces this before fxamacker/cbor decodes a block into a Go struct, so
// a block has exactly one valid encoding apart from unknown keys, which are
// allowed (and ignored) for forward compatibility.

const (
	maxNesting  = 16      // arrays, maps and tags inside each other
	maxArrayLen = 1 << 17 // more than the entries an entry block can hold
	maxMapPairs = 64      // our maps have at most 10 keys
	tagCID      = 42      // dag-cbor CID link
	majorUint   = 0
	majorNegInt = 1
	majorBytes  = 2
	majorText   = 3
	majorArray  = 4
	majorMap    = 5
	majorTag    = 6
	majorSimple = 7
	simpleFalse = 20
	simpleTrue  = 21
	simpleNull  = 22
	simpleUndef = 23
	infoIndef   = 31
	infoUint8   = 24
	infoUint64  = 27
	cborFalse   = majorSimple<<5 | simpleFalse
	cborTrue    = majorSimple<<5 | simpleTrue
)

// The modes are immutable after creation and safe for concurrent use.
var (
	encMode = mustEncMode()
	decMode = mustDecMode()
)

func mustEncMode() cbor.UserBufferEncMode {
	em, err := cbor.CanonicalEncOptions().UserBufferEncMode()
	if err != nil {
		panic(err) // static options; cannot fail
	}
	return em
}

func mustDecMode() cbor.DecMode {
	dm, err := cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels:   maxNesting,
		MaxArrayElements:  maxArrayLen,
		MaxMapPairs:       maxMapPairs,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsAllowed,
		UTF8:              cbor.UTF8RejectInvalid,
		FieldNameMatching: cbor.FieldNameMatchingCaseSensitive,
	}.DecMode()
	if err != nil {
		panic(err) // static options; cannot fail
	}
	return dm
}

// checkStrict verifies that data is exactly one CBOR data item in the strict
// subset above, that it is a map, and that the map has the required keys.
func checkStrict(data []byte, required ...string) error {
	s := strictReader{data: data}
	major, n, err := s.head()
	if err != nil {
		return err
	}
	if major != majorMap {
		return fmt.Errorf("block is not a CBOR map (major type %d)", major)
	}
	found := 0
	if err := s.mapBody(n, 1, func(key string) {
		for _, r := range required {
			if key == r {
				found++
			}
		}
	}); err != nil {
		return err
	}
	if s.off != len(data) {
		return fmt.Errorf("trailing data after the CBOR item (%d bytes)", len(data)-s.off)
	}
	if found != len(required) {
		for _, r := range required {
			if !hasKey(data, r) {
				return fmt.Errorf("missing key %q", r)
			}
		}
	}
	return nil
}

// hasKey reports whether the top-level map of the strict block data has key.
// Only used to name a missing key in an error.
func hasKey(data []byte, key string) bool {
	s := strictReader{data: data}
	_, n, _ := s.head()
	has := false
	_ = s.mapBody(n, 1, func(k string) { has = has || k == key })
	return has
}

type strictReader struct {
	data []byte
	off  int
}

// head reads an item's initial byte and argument, enforcing definite and
// shortest encodings.
func (s *strictReader) head() (major byte, arg uint64, err error) {
	if s.off >= len(s.data) {
		return 0, 0, errors.New("truncated CBOR")
	}
	b := s.data[s.off]
	s.off++
	major, info := b>>5, b&31
	switch {
	case info < infoUint8:
		return major, uint64(info), nil
	case info > infoUint64:
		if info == infoIndef {
			return 0, 0, errors.New("indefinite-length CBOR item")
		}
		return 0, 0, fmt.Errorf("reserved CBOR additional information %d", info)
	case major == majorSimple:
		return 0, 0, errors.New("floating-point or extended simple value (only true and false are allowed)")
	}
	size := 1 << (info - infoUint8) // 1, 2, 4 or 8 bytes
	if len(s.data)-s.off < size {
		return 0, 0, errors.New("truncated CBOR")
	}
	p := s.data[s.off : s.off+size]
	s.off += size
	var least uint64 // smallest value that needs this size
	switch size {
	case 1:
		arg, least = uint64(p[0]), infoUint8
	case 2:
		arg, least = uint64(binary.BigEndian.Uint16(p)), math.MaxUint8+1
	case 4:
		arg, least = uint64(binary.BigEndian.Uint32(p)), math.MaxUint16+1
	default:
		arg, least = binary.BigEndian.Uint64(p), math.MaxUint32+1
	}
	if arg < least {
		return 0, 0, errors.New("CBOR integer or length not in its shortest form")
	}
	return major, arg, nil
}

// item checks one data item at nesting level depth.
func (s *strictReader) item(depth int) error {
	major, arg, err := s.head()
	if err != nil {
		return err
	}
	switch major {
	case majorUint, majorNegInt:
		return nil
	case majorBytes, majorText:
		_, err := s.str(major, arg)
		return err
	case majorArray:
		if depth >= maxNesting {
			return errors.New("CBOR nested too deeply")
		}
		if arg > uint64(len(s.data)-s.off) {
			return errors.New("truncated CBOR array")
		}
		for range arg {
			if err := s.item(depth + 1); err != nil {
				return err
			}
		}
		return nil
	case majorMap:
		if depth >= maxNesting {
			return errors.New("CBOR nested too deeply")
		}
		return s.mapBody(arg, depth+1, nil)
	case majorTag:
		if arg != tagCID {
			return fmt.Errorf("CBOR tag %d (only 42, a CID link, is allowed)", arg)
		}
		m, n, err := s.head()
		if err != nil {
			return err
		}
		if m != majorBytes {
			return errors.New("CID link (tag 42) does not hold a byte string")
		}
		b, err := s.str(m, n)
		if err != nil {
			return err
		}
		if len(b) < 2 || b[0] != 0 {
			return errors.New("CID link (tag 42) does not start with the 0x00 multibase prefix")
		}
		return nil
	default: // majorSimple; head has rejected the multi-byte forms
		switch arg {
		case simpleFalse, simpleTrue:
			return nil
		case simpleNull, simpleUndef:
			return errors.New("null or undefined value")
		}
		return fmt.Errorf("CBOR simple value %d", arg)
	}
}

// mapBody checks the n pairs of a map whose head has been read, calling
// onKey (if not nil) with each key.
func (s *strictReader) mapBody(n uint64, depth int, onKey func(string)) error {
	if n > uint64(len(s.data)-s.off)/2 {
		return errors.New("truncated CBOR map")
	}
	var prev []byte
	for i := range n {
		m, l, err := s.head()
		if err != nil {
			return err
		}
		if m != majorText {
			return errors.New("map key is not a text string")
		}
		key, err := s.str(m, l)
		if err != nil {
			return err
		}
		if i > 0 && !keyLess(prev, key) {
			if string(prev) == string(key) {
				return fmt.Errorf("duplicate map key %q", key)
			}
			return fmt.Errorf("map keys not in canonical order: %q after %q", key, prev)
		}
		prev = key
		if onKey != nil {
			onKey(string(key))
		}
		if err := s.item(depth); err != nil {
			return err
		}
	}
	return nil
}

// keyLess is dag-cbor's key order: shorter keys first, then byte-wise.
func keyLess(a, b []byte) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return string(a) < string(b)
}

// str returns the n-byte string whose head has been read.
func (s *strictReader) str(major byte, n uint64) ([]byte, error) {
	if n > uint64(len(s.data)-s.off) {
		return nil, errors.New("truncated CBOR string")
	}
	b := s.data[s.off : s.off+int(n)]
	s.off += int(n)
	if major == majorText && !utf8.Valid(b) {
		return nil, errors.New("text string is not valid UTF-8")
	}
	return b, nil
}

// link is a CID encoded as a dag-cbor link: tag 42 around a byte string
// holding 0x00 and the binary CID.
type link struct{ c cid.Cid }

func (l link) MarshalCBOR() ([]byte, error) {
	if !l.c.Defined() {
		return nil, errors.New("manifest: undefined CID in a link")
	}
	return appendLink(nil, l.c), nil
}

func appendLink(dst []byte, c cid.Cid) []byte {
	b := c.Bytes()
	dst = append(dst, majorTag<<5|infoUint8, tagCID)
	dst = appendHead(dst, majorBytes, uint64(len(b)+1))
	dst = append(dst, 0)
	return append(dst, b...)
}

// linkSize is the encoded size of a link to c.
func linkSize(c cid.Cid) int { return len(appendLink(nil, c)) }

func (l *link) UnmarshalCBOR(data []byte) error {
	s := strictReader{data: data}
	m, tag, err := s.head()
	if err != nil {
		return err
	}
	if m != majorTag || tag != tagCID {
		return errors.New("expected a CID link (CBOR tag 42)")
	}
	m, n, err := s.head()
	if err != nil {
		return err
	}
	b, err := s.str(m, n)
	if err != nil || m != majorBytes || len(b) < 1 || b[0] != 0 || s.off != len(data) {
		return errors.New("malformed CID link")
	}
	c, err := cid.Cast(b[1:])
	if err != nil {
		return fmt.Errorf("malformed CID in link: %v", err)
	}
	l.c = c
	return nil
}

// appendHead appends a CBOR head in its shortest form.
func appendHead(dst []byte, major byte, n uint64) []byte {
	m := major << 5
	switch {
	case n < infoUint8:
		return append(dst, m|byte(n))
	case n <= math.MaxUint8:
		return append(dst, m|24, byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(dst, m|25), uint16(n))
	case n <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(dst, m|26), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(dst, m|27), n)
}

// headSize is len(appendHead(nil, _, n)).
func headSize(n uint64) int {
	switch {
	case n < infoUint8:
		return 1
	case n <= math.MaxUint8:
		return 2
	case n <= math.MaxUint16:
		return 3
	case n <= math.MaxUint32:
		return 5
	}
	return 9
}

// Entries are decoded into fields that record whether they were present
// (the top-level keys of a block are checked by checkStrict), one type per
// key so that errors can name it.

type optUint struct {
	v  uint64
	ok bool
}

func (u *optUint) decode(data []byte, key string) error {
	s := strictReader{data: data}
	m, v, err := s.head()
	if err != nil || m != majorUint || s.off != len(data) {
		return fmt.Errorf("%q is not an unsigned integer", key)
	}
	u.v, u.ok = v, true
	return nil
}

type sizeField struct{ optUint }

func (f *sizeField) UnmarshalCBOR(data []byte) error { return f.decode(data, "s") }

type modeField struct{ optUint }

func (f *modeField) UnmarshalCBOR(data []byte) error { return f.decode(data, "m") }

// timeField is a signed integer: nanoseconds since the Unix epoch.
type timeField struct {
	v  int64
	ok bool
}

func (f *timeField) UnmarshalCBOR(data []byte) error {
	s := strictReader{data: data}
	m, v, err := s.head()
	if err != nil || (m != majorUint && m != majorNegInt) || s.off != len(data) {
		return fmt.Errorf("%q is not an integer", "t")
	}
	if v > math.MaxInt64 {
		return fmt.Errorf("%q is outside the range of nanosecond Unix times", "t")
	}
	f.v, f.ok = int64(v), true
	if m == majorNegInt {
		f.v = -1 - f.v // CBOR stores -1-n
	}
	return nil
}

type dirField struct {
	v  bool
	ok bool
}

func (b *dirField) UnmarshalCBOR(data []byte) error {
	if len(data) != 1 || (data[0] != cborFalse && data[0] != cborTrue) {
		return fmt.Errorf("%q is not a boolean", "d")
	}
	b.v, b.ok = data[0] == cborTrue, true
	return nil
}

// toInt64 returns v if it is at most MaxInt64.
func toInt64(v uint64, key string) (int64, error) {
	if v > math.MaxInt64 {
		return 0, fmt.Errorf("%q is %d, more than 2^63-1", key, v)
	}
	return int64(v), nil
}

// Wire forms of the blocks. Field order does not matter: the canonical
// encoder sorts keys length-first.

type rootOut struct {
	Shoal       uint64 `cbor:"shoal"`
	Name        string `cbor:"name"`
	Single      bool   `cbor:"single"`
	ChunkSize   uint64 `cbor:"chunkSize"`
	Hash        uint64 `cbor:"hash"`
	Size        uint64 `cbor:"size"`
	Chunks      uint64 `cbor:"chunks"`
	Entries     uint64 `cbor:"entries"`
	EntryBlocks []link `cbor:"entryBlocks"`
	ChunkBlocks []link `cbor:"chunkBlocks"`
	// Seal is the format version of the encryption of the share's files
	// (package transfer/seal); absent for plaintext.
	Seal uint64 `cbor:"seal,omitempty"`
}

// rootIn is rootOut: checkStrict has made sure that every key is present.
type rootIn = rootOut

type entryOut struct {
	P string `cbor:"p"`
	D bool   `cbor:"d"`
	S uint64 `cbor:"s"`
	M uint64 `cbor:"m"`
	T *int64 `cbor:"t,omitempty"` // Unix time in ns; absent when not recorded
}

type entryIn struct {
	P string    `cbor:"p"`
	D dirField  `cbor:"d"`
	S sizeField `cbor:"s"`
	M modeField `cbor:"m"`
	T timeField `cbor:"t"`
}

type entryBlockOut struct {
	Start   uint64          `cbor:"start"`
	Entries cbor.RawMessage `cbor:"entries"` // array head + encoded entries
}

type entryBlockIn struct {
	Start   uint64    `cbor:"start"`
	Entries []entryIn `cbor:"entries"`
}

type chunkBlockOut struct {
	Start   uint64 `cbor:"start"`
	Digests []byte `cbor:"digests"`
}

type chunkBlockIn = chunkBlockOut
