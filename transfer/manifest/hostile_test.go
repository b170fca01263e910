package manifest

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

// spec describes a manifest as plain maps, to be encoded without the
// builder's checks so that tests can break any rule.
type spec struct {
	root        map[string]any   // without the block lists
	entryBlocks []map[string]any // "start" and "entries"
	chunkBlocks []map[string]any // "start" and "digests"
	// raw, if set, rewrites a block's bytes before its CID is computed;
	// kind is "root", "entry" or "chunk".
	raw func(kind string, i int, data []byte) []byte
	// serve, if set, rewrites what get returns for a block.
	serve func(c cid.Cid, data []byte) []byte
	// rootCID, if set, replaces the root CID given to Load.
	rootCID func(c cid.Cid) cid.Cid
}

func entry(p string, dir bool, size, mode int) map[string]any {
	return map[string]any{"p": p, "d": dir, "s": size, "m": mode}
}

// validSpec is a valid directory share: d/, d/f (2 chunks), e (1 chunk).
func validSpec() *spec {
	return &spec{
		root: map[string]any{
			"shoal": 1, "name": "share", "single": false, "chunkSize": cs, "hash": mh.BLAKE3,
			"size": cs + 100 + 5, "chunks": 3, "entries": 3,
		},
		entryBlocks: []map[string]any{{"start": 0, "entries": []any{
			entry("d", true, 0, 0o755), entry("d/f", false, cs+100, 0o644), entry("e", false, 5, 0o600),
		}}},
		chunkBlocks: []map[string]any{{"start": 0, "digests": bytes.Repeat([]byte{7}, 3*DigestSize)}},
	}
}

func (s *spec) encode(t *testing.T) (cid.Cid, blockStore) {
	t.Helper()
	blocks := blockStore{}
	put := func(kind string, i int, v any) cid.Cid {
		var buf bytes.Buffer
		if err := encMode.MarshalToBuffer(v, &buf); err != nil {
			t.Fatal(err)
		}
		data := buf.Bytes()
		if s.raw != nil {
			data = s.raw(kind, i, data)
		}
		c := blockCID(mh.BLAKE3, data)
		blocks[c] = data
		return c
	}
	var eb, cb []any
	for i, b := range s.entryBlocks {
		eb = append(eb, link{put("entry", i, b)})
	}
	for i, b := range s.chunkBlocks {
		cb = append(cb, link{put("chunk", i, b)})
	}
	root := maps.Clone(s.root)
	if _, ok := root["entryBlocks"]; !ok {
		root["entryBlocks"] = append([]any{}, eb...)
	}
	if _, ok := root["chunkBlocks"]; !ok {
		root["chunkBlocks"] = append([]any{}, cb...)
	}
	c := put("root", 0, root)
	if s.serve != nil {
		for k, v := range blocks {
			blocks[k] = s.serve(k, v)
		}
	}
	if s.rootCID != nil {
		other := s.rootCID(c)
		blocks[other] = blocks[c] // served, but must be refused before that
		c = other
	}
	return c, blocks
}

func TestLoadValidSpec(t *testing.T) {
	s := validSpec()
	s.root["future"] = "unknown keys are ignored"
	s.entryBlocks[0]["entries"].([]any)[0].(map[string]any)["x"] = 1
	root, blocks := s.encode(t)
	m, err := Load(context.Background(), root, blocks.get)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Entries) != 3 || m.NumChunks() != 3 || m.Entries[2].FirstChunk != 2 {
		t.Fatalf("%+v", m)
	}
}

func TestLoadRejects(t *testing.T) {
	entries := func(s *spec) []any { return s.entryBlocks[0]["entries"].([]any) }
	setPath := func(i int, p string) func(*spec) {
		return func(s *spec) { entries(s)[i].(map[string]any)["p"] = p }
	}
	setEntry := func(i int, k string, v any) func(*spec) {
		return func(s *spec) { entries(s)[i].(map[string]any)[k] = v }
	}
	setRoot := func(k string, v any) func(*spec) { return func(s *spec) { s.root[k] = v } }
	raw := func(kind string, f func([]byte) []byte) func(*spec) {
		return func(s *spec) {
			s.raw = func(k string, _ int, data []byte) []byte {
				if k == kind {
					return f(data)
				}
				return data
			}
		}
	}
	withCID := func(f func(cid.Cid) cid.Cid) func(*spec) { return func(s *spec) { s.rootCID = f } }
	otherPrefix := func(p cid.Prefix) func(cid.Cid) cid.Cid {
		return func(c cid.Cid) cid.Cid {
			d, _ := mh.Decode(c.Hash())
			m, _ := mh.Encode(d.Digest[:min(len(d.Digest), 32)], p.MhType)
			if p.Version == 0 {
				return cid.NewCidV0(m)
			}
			return cid.NewCidV1(p.Codec, m)
		}
	}

	cases := []struct {
		name   string
		mutate func(*spec)
		want   error
		msg    string
	}{
		// Paths.
		{"dot-dot", setPath(1, "d/.."), ErrInvalid, `path component ".."`},
		{"dot", setPath(1, "d/./f"), ErrInvalid, `path component "."`},
		{"absolute", setPath(0, "/d"), ErrInvalid, "absolute path"},
		{"backslash", setPath(1, `d\f`), ErrInvalid, "backslash"},
		{"NUL", setPath(2, "e\x00"), ErrInvalid, "NUL"},
		{"trailing slash", setPath(0, "d/"), ErrInvalid, "trailing slash"},
		{"empty component", setPath(1, "d//f"), ErrInvalid, "empty path component"},
		{"empty path", setPath(0, ""), ErrInvalid, "empty path"},
		{"invalid UTF-8", setPath(2, "e\xff"), ErrInvalid, "UTF-8"},
		{"path too long", setPath(2, strings.Repeat("e/", 2048)+"e"), ErrInvalid, "more than the limit of 4096"},
		{"component too long", setPath(2, strings.Repeat("e", 256)), ErrInvalid, "more than the limit of 255"},
		{"duplicate", setPath(2, "d/f"), ErrInvalid, "duplicate entry"},
		{"unsorted", setPath(2, "a"), ErrInvalid, "out of order"},
		{"missing parent", setPath(0, "c"), ErrInvalid, `parent directory "d" is not listed`},
		{"file as parent", setEntry(0, "d", false), ErrInvalid, `parent "d" is a file`},
		{"path key missing", func(s *spec) { delete(entries(s)[2].(map[string]any), "p") }, ErrInvalid, "empty path"},
		// Other entry fields.
		{"directory with size", func(s *spec) {
			setEntry(0, "s", 5)(s)
			setRoot("size", cs+110)(s)
		}, ErrInvalid, "directory with size 5"},
		{"mode bits", setEntry(2, "m", 0o4755), ErrInvalid, "mode"},
		{"negative size", setEntry(2, "s", -5), ErrInvalid, `"s" is not an unsigned integer`},
		{"size over 2^63", setEntry(2, "s", uint64(1<<63)), ErrInvalid, "more than 2^63-1"},
		{"size key missing", func(s *spec) { delete(entries(s)[2].(map[string]any), "s") }, ErrInvalid, `missing "s"`},
		{"d key missing", func(s *spec) { delete(entries(s)[2].(map[string]any), "d") }, ErrInvalid, `missing "d"`},
		{"size is text", setEntry(2, "s", "5"), ErrInvalid, `"s" is not an unsigned integer`},
		{"time is text", setEntry(2, "t", "2026"), ErrInvalid, `"t" is not an integer`},
		{"seal is text", setRoot("seal", "yes"), ErrInvalid, "seal"},
		{"seal out of range", setRoot("seal", 256), ErrInvalid, "seal version 256"},
		{"time is a float", setEntry(2, "t", 1.5), ErrInvalid, "floating-point"},
		{"time over 2^63-1", setEntry(2, "t", uint64(1<<63)), ErrInvalid, `"t" is outside the range`},
		{"null", setEntry(2, "m", nil), ErrInvalid, "null"},
		{"float", setEntry(2, "s", 1.5), ErrInvalid, "floating-point"},
		// Totals.
		{"size mismatch", setRoot("size", cs+106), ErrInvalid, "declares 262250 bytes, the entries hold 262249"},
		{"chunk count mismatch", setRoot("chunks", 4), ErrInvalid, "declares 4 chunks, the entries hold 3"},
		{"entry count too small", setRoot("entries", 2), ErrInvalid, "more entries than the 2"},
		{"entry count too large", setRoot("entries", 4), ErrInvalid, "declares 4 entries, the entry blocks hold 3"},
		{"huge chunk count", func(s *spec) {
			setRoot("chunks", 1<<40)(s)
			setRoot("size", 1<<50)(s)
		}, ErrInvalid, "1 chunk blocks for 1099511627776 chunks"},
		{"huge entry count", setRoot("entries", 1<<40), ErrInvalid, "1 entry blocks cannot hold 1099511627776 entries"},
		{"chunks without size", setRoot("size", 2), ErrInvalid, "cannot hold 2 bytes"},
		// Chunk blocks.
		{"digests not a multiple of 32", func(s *spec) { s.chunkBlocks[0]["digests"] = make([]byte, 95) }, ErrInvalid, "95 bytes is not a multiple of 32"},
		{"too few digests", func(s *spec) { s.chunkBlocks[0]["digests"] = make([]byte, 64) }, ErrInvalid, "holds 2 digests, want 3"},
		{"chunk block start", func(s *spec) { s.chunkBlocks[0]["start"] = 1 }, ErrInvalid, "starts at chunk 1, want 0"},
		{"chunk block digests missing", func(s *spec) { delete(s.chunkBlocks[0], "digests") }, ErrInvalid, `missing key "digests"`},
		{"chunk block digests as text", func(s *spec) { s.chunkBlocks[0]["digests"] = strings.Repeat("x", 96) }, ErrInvalid, "chunk block 0"},
		{"extra chunk block", func(s *spec) { s.chunkBlocks = append(s.chunkBlocks, s.chunkBlocks[0]) }, ErrInvalid, "2 chunk blocks for 3 chunks"},
		// Entry blocks.
		{"entry block start", func(s *spec) { s.entryBlocks[0]["start"] = 1 }, ErrInvalid, "starts at entry 1, want 0"},
		{"empty entry block", func(s *spec) {
			s.entryBlocks = append([]map[string]any{{"start": 0, "entries": []any{}}}, s.entryBlocks...)
		}, ErrInvalid, "no entries"},
		{"entries not an array", func(s *spec) { s.entryBlocks[0]["entries"] = 5 }, ErrInvalid, "entry block 0"},
		// Root fields.
		{"version", setRoot("shoal", 2), ErrInvalid, "format version 2"},
		{"version missing", func(s *spec) { delete(s.root, "shoal") }, ErrInvalid, `missing key "shoal"`},
		{"size missing", func(s *spec) { delete(s.root, "size") }, ErrInvalid, `missing key "size"`},
		{"chunk size not a power of two", setRoot("chunkSize", 300000), ErrInvalid, "chunk size 300000"},
		{"chunk size too small", setRoot("chunkSize", 4096), ErrInvalid, "chunk size 4096"},
		{"chunk size too large", setRoot("chunkSize", 32<<20), ErrInvalid, "chunk size 33554432"},
		{"hash differs from the CID's", setRoot("hash", mh.SHA2_256), ErrInvalid, "differs from the root CID"},
		{"name with slash", setRoot("name", "a/b"), ErrInvalid, "name"},
		{"name dot-dot", setRoot("name", ".."), ErrInvalid, "name"},
		{"name empty", setRoot("name", ""), ErrInvalid, "name"},
		{"single with three entries", setRoot("single", true), ErrInvalid, "single-file share with 3 entries"},
		{"single named otherwise", func(s *spec) {
			setRoot("single", true)(s)
			s.root["entries"], s.root["size"], s.root["chunks"] = 1, 5, 1
			s.entryBlocks[0]["entries"] = []any{entry("other", false, 5, 0o644)}
			s.chunkBlocks[0]["digests"] = make([]byte, 32)
		}, ErrInvalid, "single-file share whose entry"},
		{"single directory", func(s *spec) {
			setRoot("single", true)(s)
			s.root["entries"], s.root["size"], s.root["chunks"] = 1, 0, 0
			s.entryBlocks[0]["entries"] = []any{entry("share", true, 0, 0o755)}
			s.chunkBlocks = nil
		}, ErrInvalid, "single-file share whose entry"},
		{"link is not tag 42", setRoot("entryBlocks", []any{[]byte("x")}), ErrInvalid, "CID link"},
		{"link to a raw CID", func(s *spec) {
			setRoot("chunkBlocks", []any{link{cid.NewCidV1(cid.Raw, mustMH(make([]byte, 32), mh.BLAKE3))}})(s)
		}, ErrInvalid, "chunk block 0: CID"},
		{"link with another hash", func(s *spec) {
			setRoot("chunkBlocks", []any{link{cid.NewCidV1(cid.DagCBOR, mustMH(make([]byte, 32), mh.SHA2_256))}})(s)
		}, ErrInvalid, "not a CIDv1 dag-cbor blake3 CID"},
		// Encoding.
		{"trailing data after the root", raw("root", func(b []byte) []byte { return append(b, 0) }), ErrInvalid, "trailing data"},
		{"trailing data after an entry block", raw("entry", func(b []byte) []byte { return append(b, 0xa0) }), ErrInvalid, "trailing data"},
		{"truncated entry block", raw("entry", func(b []byte) []byte { return b[:len(b)-1] }), ErrInvalid, "truncated"},
		{"root not a map", raw("root", func([]byte) []byte { return []byte{0x80} }), ErrInvalid, "not a CBOR map"},
		{"indefinite length", raw("chunk", func(b []byte) []byte { return append([]byte{0xbf}, b[1:]...) }), ErrInvalid, "indefinite"},
		// Block identity.
		{"root bytes do not match the CID", func(s *spec) {
			s.serve = func(c cid.Cid, d []byte) []byte { return append(bytes.Clone(d), 0) }
		}, ErrHashMismatch, "root block"},
		{"entry block does not match its CID", func(s *spec) {
			s.serve = func(c cid.Cid, d []byte) []byte {
				if bytes.Contains(d, []byte("d/f")) {
					return bytes.Replace(d, []byte("d/f"), []byte("d/g"), 1)
				}
				return d
			}
		}, ErrHashMismatch, "entry block 0"},
		{"oversized block", func(s *spec) {
			s.entryBlocks[0]["pad"] = make([]byte, MaxBlockSize)
		}, ErrInvalid, "more than the limit of 1048576"},
		{"root CID with codec raw", withCID(otherPrefix(cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.BLAKE3})), ErrInvalid, "codec 0x55"},
		{"root CIDv0", withCID(otherPrefix(cid.Prefix{Version: 0, MhType: mh.SHA2_256})), ErrInvalid, "version 0"},
		{"root CID with SHA-1", withCID(otherPrefix(cid.Prefix{Version: 1, Codec: cid.DagCBOR, MhType: mh.SHA1})), ErrInvalid, "multihash 0x11"},
		{"root CID undefined", withCID(func(cid.Cid) cid.Cid { return cid.Undef }), ErrInvalid, "undefined CID"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := validSpec()
			c.mutate(s)
			root, blocks := s.encode(t)
			_, err := Load(context.Background(), root, blocks.get)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("Load: %v\nwant %v containing %q", err, c.want, c.msg)
			}
		})
	}
}

func mustMH(digest []byte, code uint64) mh.Multihash {
	m, err := mh.Encode(digest, code)
	if err != nil {
		panic(err)
	}
	return m
}

func TestLoadFetchErrors(t *testing.T) {
	root, blocks := validSpec().encode(t)
	boom := errors.New("peer went away")
	calls := 0
	_, err := Load(context.Background(), root, func(ctx context.Context, c cid.Cid) ([]byte, error) {
		if calls++; calls == 2 {
			return nil, boom
		}
		return blocks.get(ctx, c)
	})
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "entry block 0") {
		t.Fatalf("Load: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Load(ctx, root, blocks.get); !errors.Is(err, context.Canceled) {
		t.Fatalf("Load with a cancelled context: %v", err)
	}
}

func TestCheckStrict(t *testing.T) {
	cases := []struct {
		name string
		data []byte
		msg  string
	}{
		{"valid", []byte{0xa2, 0x61, 'a', 0x01, 0x62, 'a', 'a', 0xf5}, ""},
		{"unsorted keys", []byte{0xa2, 0x62, 'a', 'a', 0x01, 0x61, 'a', 0x01}, "canonical order"},
		{"byte order", []byte{0xa2, 0x61, 'b', 0x01, 0x61, 'a', 0x01}, "canonical order"},
		{"duplicate key", []byte{0xa2, 0x61, 'a', 0x01, 0x61, 'a', 0x02}, "duplicate map key"},
		{"long int", []byte{0xa1, 0x61, 'a', 0x18, 0x05}, "shortest form"},
		{"long length", []byte{0xa1, 0x78, 0x01, 'a', 0x01}, "shortest form"},
		{"indefinite map", []byte{0xbf, 0xff}, "indefinite"},
		{"indefinite string", []byte{0xa1, 0x61, 'a', 0x7f, 0xff}, "indefinite"},
		{"tag 0", []byte{0xa1, 0x61, 'a', 0xc0, 0x60}, "tag 0"},
		{"tag 42 on text", []byte{0xa1, 0x61, 'a', 0xd8, 0x2a, 0x61, 'x'}, "does not hold a byte string"},
		{"tag 42 without prefix", []byte{0xa1, 0x61, 'a', 0xd8, 0x2a, 0x42, 0x01, 0x01}, "0x00 multibase prefix"},
		{"null", []byte{0xa1, 0x61, 'a', 0xf6}, "null"},
		{"undefined", []byte{0xa1, 0x61, 'a', 0xf7}, "null or undefined"},
		{"float16", []byte{0xa1, 0x61, 'a', 0xf9, 0x3c, 0x00}, "floating-point"},
		{"float64", []byte{0xa1, 0x61, 'a', 0xfb, 0, 0, 0, 0, 0, 0, 0, 0}, "floating-point"},
		{"simple value", []byte{0xa1, 0x61, 'a', 0xe0}, "simple value 0"},
		{"reserved info", []byte{0xa1, 0x61, 'a', 0x1c}, "reserved"},
		{"int key", []byte{0xa1, 0x01, 0x01}, "not a text string"},
		{"invalid UTF-8 key", []byte{0xa1, 0x61, 0xff, 0x01}, "UTF-8"},
		{"truncated", []byte{0xa1, 0x61}, "truncated"},
		{"empty", nil, "truncated"},
		{"huge array", []byte{0xa1, 0x61, 'a', 0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, "truncated"},
		{"huge map", []byte{0xa1, 0x61, 'a', 0xbb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, "truncated"},
		{"huge string", []byte{0xa1, 0x61, 'a', 0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, "truncated"},
		{"deep", append(append([]byte{0xa1, 0x61, 'a'}, bytes.Repeat([]byte{0x81}, 100)...), 0x01), "nested too deeply"},
		{"trailing", []byte{0xa0, 0x00}, "trailing data"},
		{"not a map", []byte{0x01}, "not a CBOR map"},
	}
	for _, c := range cases {
		err := checkStrict(c.data)
		if c.msg == "" {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v, want an error containing %q", c.name, err, c.msg)
		}
	}
	if err := checkStrict([]byte{0xa1, 0x61, 'a', 0x01}, "a", "b"); err == nil || !strings.Contains(err.Error(), `missing key "b"`) {
		t.Errorf("required key: %v", err)
	}
}
