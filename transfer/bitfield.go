package transfer

import "math/bits"

// Bitfield is a set of chunk indices, bit i MSB-first in byte i/8, the
// layout of the wire protocol's Have message.
type Bitfield []byte

// NewBitfield returns an empty bitfield for n chunks.
func NewBitfield(n int64) Bitfield { return make(Bitfield, (n+7)/8) }

// Has reports whether chunk i is set.
func (b Bitfield) Has(i int64) bool {
	return i >= 0 && i/8 < int64(len(b)) && b[i/8]&(0x80>>(i%8)) != 0
}

// Set sets chunk i.
func (b Bitfield) Set(i int64) { b[i/8] |= 0x80 >> (i % 8) }

// Clear clears chunk i.
func (b Bitfield) Clear(i int64) { b[i/8] &^= 0x80 >> (i % 8) }

// Count returns the number of chunks set.
func (b Bitfield) Count() int64 {
	var n int
	for _, c := range b {
		n += bits.OnesCount8(c)
	}
	return int64(n)
}

// Clone returns a copy.
func (b Bitfield) Clone() Bitfield { return append(Bitfield(nil), b...) }
