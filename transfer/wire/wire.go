package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/ipfs/go-cid"
)

// ProtocolID is the libp2p protocol of the transfer stream.
const ProtocolID = "/shoal/xfer/1.0.0"

// Limits on what a peer may send. They are part of the protocol: a frame
// over a limit is a protocol error.
const (
	// MaxHeader is the largest frame (type and fields, payload excluded).
	MaxHeader = 64 << 10
	// MaxBitsBytes is the largest bitfield slice in one Have message.
	MaxBitsBytes = 60 << 10
	// MaxPayload is the largest payload of a Block or Chunk (the largest
	// chunk size).
	MaxPayload = 16 << 20
	// MaxTree is the largest payload of a Tree: the group hashes of a
	// chunk of MaxPayload bytes.
	MaxTree = MaxPayload / PartSize * 32
	// PartSize is the size of every Part but a chunk's last: a verified
	// group of the chunk's hash tree.
	PartSize = 16 << 10
	// MaxText is the longest error text.
	MaxText = 1024
	// maxCID bounds an encoded CID (a CIDv1 with a 64-byte digest is ~70).
	maxCID = 128
)

// Type is a message type.
type Type uint8

// Message types. Open, GetBlock, Request and Cancel go from the fetching
// side to the serving side; the others go back.
const (
	TOpen       Type = 1  // Root
	TGetBlock   Type = 2  // ID, CID, Trace (optional)
	TRequest    Type = 3  // Index, Trace (optional)
	TCancel     Type = 4  // Index
	THave       Type = 5  // Start, Bits
	THaveAll    Type = 6  // (no fields)
	THaveUpdate Type = 7  // Index
	TBlock      Type = 8  // ID, Length; payload follows
	TChunk      Type = 9  // Index, Length; payload follows
	TError      Type = 10 // Code, About, Ref, Text
	TLimits     Type = 11 // Allow
	TPeers      Type = 12 // Peers
	TTree       Type = 13 // Index, Length; payload (the chunk's group hashes) follows
	TPart       Type = 14 // Index, Offset, Length; payload follows
)

// HasPayload reports whether messages of type t carry a payload.
func (t Type) HasPayload() bool {
	return t == TBlock || t == TChunk || t == TTree || t == TPart
}

// maxPayload is the payload cap of a type that carries one.
func (t Type) maxPayload() uint32 {
	switch t {
	case TTree:
		return MaxTree
	case TPart:
		return PartSize
	}
	return MaxPayload
}

// Caps of a Peers message: peers, addresses per peer, bytes per peer ID
// and per address.
const (
	MaxPeers     = 32
	MaxPeerAddrs = 4
	maxPeerID    = 64
	maxAddr      = 128
)

// PeerAddrs is one peer of a Peers message: its ID and addresses, both in
// their binary forms.
type PeerAddrs struct {
	ID    []byte
	Addrs [][]byte
}

// MaxAllow caps the entries of a Limits message, and MaxAllowEntry the
// bytes of one entry.
const (
	MaxAllow      = 16
	MaxAllowEntry = 128
)

var typeNames = [...]string{
	TOpen: "open", TGetBlock: "get-block", TRequest: "request", TCancel: "cancel",
	THave: "have", THaveAll: "have-all", THaveUpdate: "have-update",
	TBlock: "block", TChunk: "chunk", TError: "error", TLimits: "limits", TPeers: "peers",
	TTree: "tree", TPart: "part",
}

func (t Type) String() string {
	if int(t) < len(typeNames) && typeNames[t] != "" {
		return typeNames[t]
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Code is the reason carried by an Error message.
type Code uint8

// Error codes.
const (
	CodeNotFound    Code = 1 // the root, block or chunk is not held here
	CodeDenied      Code = 2 // not open to the requesting peer
	CodeBadRequest  Code = 3 // the request makes no sense (index out of range, no Open first)
	CodeStale       Code = 4 // the shared file changed since it was indexed
	CodeBusy        Code = 5 // too many requests in flight
	CodeInternal    Code = 6 // the server failed (disk error)
	CodeUnavailable Code = 7 // the chunk is not held (yet) by this peer, or stopped arriving here
	CodeCancelled   Code = 8 // the request was cancelled while its answer was being sent
	CodeCorrupt     Code = 9 // (client to server) the chunk sent failed verification here
)

var codeNames = [...]string{
	CodeNotFound: "not found", CodeDenied: "denied", CodeBadRequest: "bad request",
	CodeStale: "stale", CodeBusy: "busy", CodeInternal: "internal error",
	CodeUnavailable: "unavailable", CodeCancelled: "cancelled", CodeCorrupt: "corrupt",
}

func (c Code) String() string {
	if int(c) < len(codeNames) && codeNames[c] != "" {
		return codeNames[c]
	}
	return fmt.Sprintf("code(%d)", uint8(c))
}

// About says what an Error answers.
type About uint8

// What an Error answers.
const (
	AboutStream About = 0 // the Open, or the stream as a whole
	AboutBlock  About = 1 // the GetBlock whose ID is Ref
	AboutChunk  About = 2 // the Request whose Index is Ref
)

// Msg is any message. Only the fields of its Type are meaningful; the
// others are zero.
type Msg struct {
	Type   Type
	Root   cid.Cid // Open
	CID    cid.Cid // GetBlock
	ID     uint64  // GetBlock, Block
	Index  uint64  // Request, Cancel, HaveUpdate, Chunk, Tree, Part
	Offset uint64  // Part: where its bytes start in the chunk (a multiple of PartSize)
	Start  uint64  // Have: index of the first chunk Bits describes (multiple of 8)
	Bits   []byte  // Have: bit i (MSB first in each byte) is chunk Start+i
	Length uint32  // Block, Chunk, Tree, Part: payload bytes following the frame
	Code   Code    // Error
	About  About   // Error: what Ref refers to
	Ref    uint64  // Error: the ID or Index the error answers
	Text   string  // Error
	// Allow is the list of roles and peer IDs a share is limited to
	// (Limits): the serving side tells the fetching side, which enforces
	// it when it serves the share in turn.
	Allow []string
	// Peers are other peers fetching or holding the same root (Peers):
	// peer exchange, so that fetchers find each other and trade chunks.
	Peers []PeerAddrs
	// Trace is the W3C trace context of a GetBlock or Request, when the
	// fetch is traced: the serving side records its work as child spans.
	Trace Trace
}

// Trace is a W3C trace context (traceparent, version 00) in binary form.
// On the wire it follows a GetBlock's or Request's fields as 26 bytes:
// version 0, the trace ID, the parent span ID and the flags. A request
// without it ends after its fields.
type Trace struct {
	TraceID [16]byte
	SpanID  [8]byte
	Flags   byte
}

// traceLen is Trace's size on the wire, its version byte included.
const traceLen = 1 + 16 + 8 + 1

// Valid reports whether t is a trace context: both IDs non-zero, as the
// W3C specification requires.
func (t Trace) Valid() bool {
	return t.TraceID != [16]byte{} && t.SpanID != [8]byte{}
}

func appendTrace(b []byte, t Trace) []byte {
	if !t.Valid() {
		return b
	}
	b = append(b, 0)
	b = append(b, t.TraceID[:]...)
	b = append(b, t.SpanID[:]...)
	return append(b, t.Flags)
}

// ErrProtocol is wrapped by every decoding error: the peer broke the
// protocol and the stream should be reset.
var ErrProtocol = errors.New("wire: protocol violation")

func protoErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, args...))
}

// Append appends m's frame (not its payload) to dst.
func Append(dst []byte, m *Msg) ([]byte, error) {
	// The frame length is a uvarint of at most 3 bytes (MaxHeader < 1<<21):
	// reserve them, encode the body after, then close the gap.
	start := len(dst)
	b := append(dst, 0, 0, 0, byte(m.Type))
	switch m.Type {
	case TOpen:
		if !m.Root.Defined() {
			return dst, errors.New("wire: open without a root")
		}
		b = appendBytes(b, m.Root.Bytes())
	case TGetBlock:
		if !m.CID.Defined() {
			return dst, errors.New("wire: get-block without a CID")
		}
		b = binary.AppendUvarint(b, m.ID)
		b = appendBytes(b, m.CID.Bytes())
		b = appendTrace(b, m.Trace)
	case TRequest:
		b = binary.AppendUvarint(b, m.Index)
		b = appendTrace(b, m.Trace)
	case TCancel, THaveUpdate:
		b = binary.AppendUvarint(b, m.Index)
	case THave:
		if m.Start%8 != 0 {
			return dst, fmt.Errorf("wire: have start %d is not a multiple of 8", m.Start)
		}
		if len(m.Bits) > MaxBitsBytes {
			return dst, fmt.Errorf("wire: have of %d bytes exceeds %d", len(m.Bits), MaxBitsBytes)
		}
		b = binary.AppendUvarint(b, m.Start)
		b = appendBytes(b, m.Bits)
	case THaveAll:
	case TBlock:
		b = binary.AppendUvarint(b, m.ID)
		b = binary.AppendUvarint(b, uint64(m.Length))
	case TChunk, TTree:
		b = binary.AppendUvarint(b, m.Index)
		b = binary.AppendUvarint(b, uint64(m.Length))
	case TPart:
		if m.Offset%PartSize != 0 {
			return dst, fmt.Errorf("wire: part offset %d is not a multiple of %d", m.Offset, PartSize)
		}
		b = binary.AppendUvarint(b, m.Index)
		b = binary.AppendUvarint(b, m.Offset)
		b = binary.AppendUvarint(b, uint64(m.Length))
	case TError:
		text := m.Text
		if len(text) > MaxText {
			text = text[:MaxText]
		}
		if m.About > AboutChunk {
			return dst, fmt.Errorf("wire: error about %d", m.About)
		}
		b = append(b, byte(m.Code), byte(m.About))
		b = binary.AppendUvarint(b, m.Ref)
		b = appendBytes(b, []byte(text))
	case TLimits:
		if len(m.Allow) == 0 || len(m.Allow) > MaxAllow {
			return dst, fmt.Errorf("wire: limits of %d entries (1 to %d)", len(m.Allow), MaxAllow)
		}
		b = binary.AppendUvarint(b, uint64(len(m.Allow)))
		for _, a := range m.Allow {
			if a == "" || len(a) > MaxAllowEntry || !utf8.ValidString(a) {
				return dst, fmt.Errorf("wire: bad limits entry %q", a)
			}
			b = appendBytes(b, []byte(a))
		}
	case TPeers:
		if len(m.Peers) > MaxPeers {
			return dst, fmt.Errorf("wire: peers of %d entries exceeds %d", len(m.Peers), MaxPeers)
		}
		b = binary.AppendUvarint(b, uint64(len(m.Peers)))
		for _, p := range m.Peers {
			if len(p.ID) == 0 || len(p.ID) > maxPeerID || len(p.Addrs) > MaxPeerAddrs {
				return dst, errors.New("wire: bad peers entry")
			}
			b = appendBytes(b, p.ID)
			b = binary.AppendUvarint(b, uint64(len(p.Addrs)))
			for _, a := range p.Addrs {
				if len(a) > maxAddr {
					return dst, errors.New("wire: address too long")
				}
				b = appendBytes(b, a)
			}
		}
	default:
		return dst, fmt.Errorf("wire: cannot encode %v", m.Type)
	}
	if m.Type.HasPayload() && m.Length > m.Type.maxPayload() {
		return dst, fmt.Errorf("wire: %v payload of %d bytes exceeds %d", m.Type, m.Length, m.Type.maxPayload())
	}
	n := len(b) - start - 3
	if n > MaxHeader {
		return dst, fmt.Errorf("wire: %v frame of %d bytes exceeds %d", m.Type, n, MaxHeader)
	}
	var lenBuf [binary.MaxVarintLen32]byte
	k := binary.PutUvarint(lenBuf[:], uint64(n))
	copy(b[start:], lenBuf[:k])
	copy(b[start+k:], b[start+3:])
	return b[:start+k+n], nil
}

func appendBytes(b, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// Decode decodes one frame body (type and fields, without the length
// prefix). Bits aliases body.
func Decode(body []byte) (Msg, error) {
	var m Msg
	if len(body) == 0 {
		return m, protoErr("empty frame")
	}
	if len(body) > MaxHeader {
		return m, protoErr("frame of %d bytes exceeds %d", len(body), MaxHeader)
	}
	d := decoder{b: body[1:]}
	m.Type = Type(body[0])
	switch m.Type {
	case TOpen:
		m.Root = d.cid()
	case TGetBlock:
		m.ID = d.uvarint()
		m.CID = d.cid()
		m.Trace = d.trace()
	case TRequest:
		m.Index = d.uvarint()
		m.Trace = d.trace()
	case TCancel, THaveUpdate:
		m.Index = d.uvarint()
	case THave:
		m.Start = d.uvarint()
		m.Bits = d.bytes(MaxBitsBytes)
		if d.err == nil && m.Start%8 != 0 {
			d.fail("have start %d is not a multiple of 8", m.Start)
		}
	case THaveAll:
	case TBlock:
		m.ID = d.uvarint()
		m.Length = d.length()
	case TChunk:
		m.Index = d.uvarint()
		m.Length = d.length()
	case TTree:
		m.Index = d.uvarint()
		m.Length = d.length()
		if d.err == nil && m.Length > MaxTree {
			d.fail("tree of %d bytes (limit %d)", m.Length, MaxTree)
		}
	case TPart:
		m.Index = d.uvarint()
		m.Offset = d.uvarint()
		m.Length = d.length()
		if d.err == nil && (m.Offset%PartSize != 0 || m.Offset > MaxPayload) {
			d.fail("part offset %d", m.Offset)
		}
		if d.err == nil && m.Length > PartSize {
			d.fail("part of %d bytes (limit %d)", m.Length, PartSize)
		}
	case TError:
		m.Code = Code(d.byte())
		m.About = About(d.byte())
		if d.err == nil && m.About > AboutChunk {
			d.fail("error about %d", m.About)
		}
		m.Ref = d.uvarint()
		text := d.bytes(MaxText)
		if d.err == nil && !utf8.Valid(text) {
			d.fail("error text is not UTF-8")
		}
		m.Text = string(text)
	case TLimits:
		k := d.uvarint()
		if d.err == nil && (k == 0 || k > MaxAllow) {
			d.fail("limits of %d entries", k)
		}
		for i := uint64(0); d.err == nil && i < k; i++ {
			a := d.bytes(MaxAllowEntry)
			if d.err == nil && (len(a) == 0 || !utf8.Valid(a)) {
				d.fail("bad limits entry")
			}
			m.Allow = append(m.Allow, string(a))
		}
	case TPeers:
		k := d.uvarint()
		if d.err == nil && k > MaxPeers {
			d.fail("peers of %d entries", k)
		}
		for i := uint64(0); d.err == nil && i < k; i++ {
			var p PeerAddrs
			p.ID = d.bytes(maxPeerID)
			if d.err == nil && len(p.ID) == 0 {
				d.fail("empty peer ID")
			}
			na := d.uvarint()
			if d.err == nil && na > MaxPeerAddrs {
				d.fail("%d addresses for one peer", na)
			}
			for j := uint64(0); d.err == nil && j < na; j++ {
				p.Addrs = append(p.Addrs, d.bytes(maxAddr))
			}
			m.Peers = append(m.Peers, p)
		}
	default:
		return Msg{}, protoErr("unknown message type %d", body[0])
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes in %v", len(d.b), m.Type)
	}
	if d.err != nil {
		return Msg{}, d.err
	}
	return m, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = protoErr(format, args...)
	}
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail("truncated message")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(max int) []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(max) {
		d.fail("field of %d bytes exceeds %d", n, max)
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail("truncated message")
		return nil
	}
	s := d.b[:n:n]
	d.b = d.b[n:]
	return s
}

func (d *decoder) cid() cid.Cid {
	raw := d.bytes(maxCID)
	if d.err != nil {
		return cid.Undef
	}
	n, c, err := cid.CidFromBytes(raw)
	if err != nil {
		d.fail("bad CID: %v", err)
		return cid.Undef
	}
	if n != len(raw) {
		d.fail("trailing bytes after CID")
		return cid.Undef
	}
	return c
}

// trace reads an optional Trace: nothing, or exactly its 26 bytes.
func (d *decoder) trace() Trace {
	var t Trace
	if d.err != nil || len(d.b) == 0 {
		return t
	}
	if len(d.b) < traceLen {
		d.fail("truncated trace context")
		return t
	}
	if d.b[0] != 0 {
		d.fail("trace context version %d", d.b[0])
		return t
	}
	copy(t.TraceID[:], d.b[1:17])
	copy(t.SpanID[:], d.b[17:25])
	t.Flags = d.b[25]
	d.b = d.b[traceLen:]
	if !t.Valid() {
		d.fail("trace context with a zero ID")
	}
	return t
}

func (d *decoder) length() uint32 {
	n := d.uvarint()
	if d.err == nil && n > MaxPayload {
		d.fail("payload of %d bytes exceeds %d", n, MaxPayload)
	}
	return uint32(n)
}

// Reader reads frames from a stream. It is not safe for concurrent use.
type Reader struct {
	r   *bufio.Reader
	buf []byte
	// pending payload bytes the caller has not read yet
	pending uint32
}

// NewReader returns a Reader on r with a read buffer of size bytes (at
// least 4 KiB).
func NewReader(r io.Reader, size int) *Reader {
	if size < 4096 {
		size = 4096
	}
	return &Reader{r: bufio.NewReaderSize(r, size)}
}

// Next reads the next message. For Block, Chunk, Tree and Part, the caller must then
// consume exactly m.Length payload bytes with ReadPayload or Discard before
// calling Next again. Bits and other slices are valid until the next call.
// io.EOF means the stream ended cleanly between frames.
func (r *Reader) Next() (Msg, error) {
	if r.pending != 0 {
		return Msg{}, fmt.Errorf("wire: %d payload bytes not consumed", r.pending)
	}
	n, err := r.frameLen()
	if err != nil {
		return Msg{}, err
	}
	if n == 0 || n > MaxHeader {
		return Msg{}, protoErr("frame of %d bytes (limit %d)", n, MaxHeader)
	}
	if cap(r.buf) < int(n) {
		r.buf = make([]byte, n, max(int(n), 512))
	}
	r.buf = r.buf[:n]
	if _, err := io.ReadFull(r.r, r.buf); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return Msg{}, protoErr("truncated frame")
		}
		return Msg{}, err
	}
	m, err := Decode(r.buf)
	if err != nil {
		return Msg{}, err
	}
	if m.Type.HasPayload() {
		r.pending = m.Length
	}
	return m, nil
}

// frameLen reads the uvarint frame length. It reads at most 4 bytes: any
// longer encoding is over MaxHeader anyway.
func (r *Reader) frameLen() (uint64, error) {
	var n uint64
	for i := 0; i < 4; i++ {
		c, err := r.r.ReadByte()
		if err != nil {
			if err == io.EOF && i > 0 {
				return 0, protoErr("truncated frame length")
			}
			return 0, err
		}
		n |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return n, nil
		}
	}
	return 0, protoErr("frame length over %d", MaxHeader)
}

// ReadPayload reads the pending payload into dst, which must be exactly
// the payload's length.
func (r *Reader) ReadPayload(dst []byte) error {
	return r.ReadPayloadEach(dst, len(dst), nil)
}

// ReadPayloadEach is ReadPayload reading at most piece bytes at a time and
// calling each (if not nil) after every piece, so that a caller sees a
// long payload arrive.
func (r *Reader) ReadPayloadEach(dst []byte, piece int, each func()) error {
	if uint32(len(dst)) != r.pending {
		return fmt.Errorf("wire: payload is %d bytes, buffer %d", r.pending, len(dst))
	}
	r.pending = 0
	piece = max(piece, 1)
	for off := 0; off < len(dst); off += piece {
		if _, err := io.ReadFull(r.r, dst[off:min(off+piece, len(dst))]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return protoErr("truncated payload")
			}
			return err
		}
		if each != nil {
			each()
		}
	}
	return nil
}

// Discard skips the pending payload.
func (r *Reader) Discard() error {
	n := r.pending
	r.pending = 0
	if _, err := r.r.Discard(int(n)); err != nil {
		if errors.Is(err, io.EOF) {
			return protoErr("truncated payload")
		}
		return err
	}
	return nil
}

// Writer writes frames to a stream through a buffer. It is not safe for
// concurrent use; Flush sends what is buffered.
type Writer struct {
	w   *bufio.Writer
	buf []byte
}

// NewWriter returns a Writer on w with a buffer of size bytes (at least
// 4 KiB).
func NewWriter(w io.Writer, size int) *Writer {
	if size < 4096 {
		size = 4096
	}
	return &Writer{w: bufio.NewWriterSize(w, size), buf: make([]byte, 0, 256)}
}

// Write buffers m. For Block, Chunk, Tree and Part, payload is written
// after the frame and m.Length is set from it.
func (w *Writer) Write(m *Msg, payload []byte) error {
	if m.Type.HasPayload() {
		if len(payload) > int(m.Type.maxPayload()) {
			return fmt.Errorf("wire: %v payload of %d bytes exceeds %d", m.Type, len(payload), m.Type.maxPayload())
		}
		m.Length = uint32(len(payload))
	} else if len(payload) != 0 {
		return fmt.Errorf("wire: %v carries no payload", m.Type)
	}
	var err error
	w.buf, err = Append(w.buf[:0], m)
	if err != nil {
		return err
	}
	if _, err := w.w.Write(w.buf); err != nil {
		return err
	}
	if len(payload) > 0 {
		if _, err := w.w.Write(payload); err != nil {
			return err
		}
	}
	return nil
}

// Flush writes any buffered data to the stream.
func (w *Writer) Flush() error { return w.w.Flush() }

// Buffered reports how many bytes wait in the buffer.
func (w *Writer) Buffered() int { return w.w.Buffered() }
