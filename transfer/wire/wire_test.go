package wire

import (
	"bytes"
	"errors"
	"io"
	"net"
	"reflect"
	"strings"
	"testing"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

func testCID(t testing.TB, s string) cid.Cid {
	t.Helper()
	h, err := mh.Sum([]byte(s), mh.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	return cid.NewCidV1(cid.Raw, h)
}

var sampleTrace = Trace{
	TraceID: [16]byte{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
	SpanID:  [8]byte{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
	Flags:   1,
}

func sampleMsgs(t testing.TB) []Msg {
	return []Msg{
		{Type: TOpen, Root: testCID(t, "root")},
		{Type: TGetBlock, ID: 7, CID: testCID(t, "block")},
		{Type: TRequest, Index: 1 << 40},
		{Type: TRequest, Index: 5, Trace: sampleTrace},
		{Type: TGetBlock, ID: 8, CID: testCID(t, "block"), Trace: sampleTrace},
		{Type: TCancel, Index: 3},
		{Type: THave, Start: 64, Bits: []byte{0xff, 0x01, 0x80}},
		{Type: THave, Start: 0, Bits: bytes.Repeat([]byte{0xaa}, MaxBitsBytes)},
		{Type: THaveAll},
		{Type: THaveUpdate, Index: 99},
		{Type: TBlock, ID: 7, Length: 5},
		{Type: TChunk, Index: 12, Length: 3},
		{Type: TTree, Index: 12, Length: 2048},
		{Type: TPart, Index: 12, Offset: 3 * PartSize, Length: PartSize},
		{Type: TError, Code: CodeDenied, About: AboutChunk, Ref: 12, Text: "share is limited to readers"},
		{Type: TLimits, Allow: []string{"reader", "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo"}},
		{Type: TPeers, Peers: []PeerAddrs{{ID: []byte{0, 36, 8, 1}, Addrs: [][]byte{{4, 127, 0, 0, 1, 6, 0x10, 0x0e}}}, {ID: []byte{1}}}},
	}
}

func TestRoundTrip(t *testing.T) {
	for _, m := range sampleMsgs(t) {
		t.Run(m.Type.String(), func(t *testing.T) {
			frame, err := Append(nil, &m)
			if err != nil {
				t.Fatal(err)
			}
			r := NewReader(bytes.NewReader(frame), 0)
			got, err := r.Next()
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Bits) == 0 {
				got.Bits = m.Bits // nil and empty are the same on the wire
			}
			if !reflect.DeepEqual(got, m) {
				t.Fatalf("got %+v, want %+v", got, m)
			}
		})
	}
}

func TestPayloadOverPipe(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	payload := bytes.Repeat([]byte("chunk"), 100000)
	go func() {
		w := NewWriter(a, 64<<10)
		_ = w.Write(&Msg{Type: THaveAll}, nil)
		_ = w.Write(&Msg{Type: TChunk, Index: 4}, payload)
		_ = w.Write(&Msg{Type: TBlock, ID: 1}, []byte("blk"))
		_ = w.Write(&Msg{Type: TError, Code: CodeNotFound, Ref: 5}, nil)
		_ = w.Flush()
		a.Close()
	}()
	r := NewReader(b, 64<<10)
	if m, err := r.Next(); err != nil || m.Type != THaveAll {
		t.Fatalf("first: %+v %v", m, err)
	}
	m, err := r.Next()
	if err != nil || m.Type != TChunk || m.Index != 4 || int(m.Length) != len(payload) {
		t.Fatalf("chunk: %+v %v", m, err)
	}
	if _, err := r.Next(); err == nil {
		t.Fatal("Next with an unread payload succeeded")
	}
	got := make([]byte, m.Length)
	if err := r.ReadPayload(got); err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("payload mismatch: %v", err)
	}
	m, err = r.Next()
	if err != nil || m.Type != TBlock || m.Length != 3 {
		t.Fatalf("block: %+v %v", m, err)
	}
	if err := r.Discard(); err != nil {
		t.Fatal(err)
	}
	m, err = r.Next()
	if err != nil || m.Type != TError || m.Code != CodeNotFound || m.Ref != 5 {
		t.Fatalf("error: %+v %v", m, err)
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("end: %v, want EOF", err)
	}
}

func TestEncodeRejects(t *testing.T) {
	for name, m := range map[string]Msg{
		"open without root": {Type: TOpen},
		"get without cid":   {Type: TGetBlock},
		"have misaligned":   {Type: THave, Start: 3},
		"have too long":     {Type: THave, Bits: make([]byte, MaxBitsBytes+1)},
		"payload too long":  {Type: TChunk, Length: MaxPayload + 1},
		"tree too long":     {Type: TTree, Length: MaxTree + 1},
		"part too long":     {Type: TPart, Length: PartSize + 1},
		"part misaligned":   {Type: TPart, Offset: 100, Length: 10},
		"unknown type":      {Type: 200},
	} {
		if _, err := Append(nil, &m); err == nil {
			t.Errorf("%s: encoded", name)
		}
	}
	// An over-long error text is cut, not refused.
	long := Msg{Type: TError, Text: strings.Repeat("x", 5000)}
	frame, err := Append(nil, &long)
	if err != nil {
		t.Fatal(err)
	}
	got, err := NewReader(bytes.NewReader(frame), 0).Next()
	if err != nil || len(got.Text) != MaxText {
		t.Fatalf("long text: %d %v", len(got.Text), err)
	}
}

func TestDecodeRejects(t *testing.T) {
	valid, _ := Append(nil, &Msg{Type: TRequest, Index: 300})
	cases := map[string][]byte{
		"empty frame":       {0},
		"oversized frame":   {0xff, 0xff, 0x7f},
		"huge varint":       {0xff, 0xff, 0xff, 0xff, 0xff},
		"truncated length":  {0x80},
		"truncated body":    {5, byte(TRequest)},
		"unknown type":      {1, 99},
		"bad varint field":  {3, byte(TRequest), 0x80, 0x80},
		"bad cid":           {4, byte(TOpen), 2, 0xff, 0xff},
		"long cid":          append([]byte{0x83, 0x01, byte(TOpen), 0x80, 0x01}, make([]byte, 128)...),
		"payload too large": {6, byte(TChunk), 1, 0x81, 0x80, 0x80, 0x08},
		"bits misaligned":   {4, byte(THave), 3, 1, 0xff},
		"text not utf8":     {7, byte(TError), 1, 0, 0, 2, 0xff, 0xfe},
		"bad about":         {5, byte(TError), 1, 9, 0, 0},
		"tree too large":    {5, byte(TTree), 1, 0x81, 0x80, 0x02},
		"part too large":    {6, byte(TPart), 1, 0, 0x81, 0x80, 0x01},
		"part misaligned":   {4, byte(TPart), 1, 5, 1},
		"part offset huge":  {7, byte(TPart), 1, 0x80, 0x80, 0x80, 0x10, 1},
	}
	// "trailing bytes": a valid request whose frame claims one more byte.
	tb := append([]byte{}, valid...)
	tb[0]++
	cases["trailing bytes"] = append(tb, 0)
	// Trace contexts: a request with one, then broken.
	traced, _ := Append(nil, &Msg{Type: TRequest, Index: 300, Trace: sampleTrace})
	body := traced[1:] // the frame length is one byte here
	frame := func(b []byte) []byte { return append([]byte{byte(len(b))}, b...) }
	withTrace := func(f func(tr []byte)) []byte {
		b := append([]byte{}, body...)
		f(b[len(b)-traceLen:])
		return frame(b)
	}
	cases["trace truncated"] = frame(body[:len(body)-1])
	cases["trace trailing"] = frame(append(append([]byte{}, body...), 0))
	cases["trace version"] = withTrace(func(tr []byte) { tr[0] = 1 })
	cases["trace zero ID"] = withTrace(func(tr []byte) { clear(tr[1:17]) })
	cases["trace zero span"] = withTrace(func(tr []byte) { clear(tr[17:25]) })
	for name, in := range cases {
		_, err := NewReader(bytes.NewReader(in), 0).Next()
		if err == nil {
			t.Errorf("%s: decoded", name)
			continue
		}
		if !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: error %v does not wrap ErrProtocol", name, err)
		}
	}
}

func TestTruncatedPayload(t *testing.T) {
	frame, _ := Append(nil, &Msg{Type: TChunk, Index: 1, Length: 10})
	r := NewReader(bytes.NewReader(append(frame, 1, 2, 3)), 0)
	m, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.ReadPayload(make([]byte, m.Length)); !errors.Is(err, ErrProtocol) {
		t.Fatalf("truncated payload: %v", err)
	}
}

func BenchmarkChunkFrame(b *testing.B) {
	payload := make([]byte, 1<<20)
	w := NewWriter(io.Discard, 256<<10)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		if err := w.Write(&Msg{Type: TChunk, Index: 1234}, payload); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeRequest(b *testing.B) {
	frame, _ := Append(nil, &Msg{Type: TRequest, Index: 123456})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(frame[1:]); err != nil {
			b.Fatal(err)
		}
	}
}
