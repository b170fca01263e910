package manifest

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite the fuzz seed corpora in testdata/fuzz")

// FuzzDecodeRoot feeds arbitrary root blocks to DecodeRoot, under their own
// BLAKE3 CID so that decoding gets past the hash check.
func FuzzDecodeRoot(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		c := blockCID(mh.BLAKE3, data)
		r, err := DecodeRoot(c, data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		if checkChunkSize(r.ChunkSize) != nil || r.Hash != mh.BLAKE3 || checkComponent(r.Name) != nil ||
			r.Size < 0 || r.Chunks < 0 || r.Entries < int64(len(r.EntryBlocks)) ||
			int64(len(r.ChunkBlocks)) != (r.Chunks+DigestsPerBlock-1)/DigestsPerBlock {
			t.Fatalf("DecodeRoot accepted an invalid root: %+v", r)
		}
		// What was accepted re-encodes canonically to a root that decodes
		// the same (byte equality is not expected: unknown keys drop).
		again := encodeRoot(t, r)
		r2, err := DecodeRoot(blockCID(mh.BLAKE3, again), again)
		if err != nil {
			t.Fatalf("re-encoded root rejected: %v", err)
		}
		if !reflect.DeepEqual(r, r2) {
			t.Fatalf("re-encoded root decodes differently:\n%+v\n%+v", r, r2)
		}
	})
}

func encodeRoot(t testing.TB, r *Root) []byte {
	out := rootOut{
		Shoal: 1, Name: r.Name, Single: r.Single, ChunkSize: uint64(r.ChunkSize), Hash: r.Hash,
		Size: uint64(r.Size), Chunks: uint64(r.Chunks), Entries: uint64(r.Entries),
		EntryBlocks: []link{}, ChunkBlocks: []link{}, Seal: uint64(r.Seal),
	}
	for _, c := range r.EntryBlocks {
		out.EntryBlocks = append(out.EntryBlocks, link{c})
	}
	for _, c := range r.ChunkBlocks {
		out.ChunkBlocks = append(out.ChunkBlocks, link{c})
	}
	var buf bytes.Buffer
	if err := encMode.MarshalToBuffer(&out, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// loadInput is the input of FuzzLoad: root fields, and one entry block
// and one chunk block (each left out of the root when empty).
type loadInput struct {
	name                  string
	single                bool
	chunkShift            uint8 // chunk size MinChunkSize << (chunkShift % 7)
	size, chunks, entries uint64
	entryBlock            []byte
	chunkBlock            []byte
}

func (in loadInput) args() []any {
	return []any{in.name, in.single, in.chunkShift, in.size, in.chunks, in.entries, in.entryBlock, in.chunkBlock}
}

// blocks builds the root for in without the builder's checks.
func (in loadInput) blocks() (cid.Cid, blockStore, error) {
	s := blockStore{}
	r := rootOut{
		Shoal: 1, Name: in.name, Single: in.single, ChunkSize: MinChunkSize << (in.chunkShift % 7), Hash: mh.BLAKE3,
		Size: in.size, Chunks: in.chunks, Entries: in.entries, EntryBlocks: []link{}, ChunkBlocks: []link{},
	}
	if len(in.entryBlock) > 0 {
		c := blockCID(mh.BLAKE3, in.entryBlock)
		s[c] = in.entryBlock
		r.EntryBlocks = append(r.EntryBlocks, link{c})
	}
	if len(in.chunkBlock) > 0 {
		c := blockCID(mh.BLAKE3, in.chunkBlock)
		s[c] = in.chunkBlock
		r.ChunkBlocks = append(r.ChunkBlocks, link{c})
	}
	var buf bytes.Buffer
	if err := encMode.MarshalToBuffer(&r, &buf); err != nil {
		return cid.Undef, nil, err // a name that is not valid UTF-8
	}
	c := blockCID(mh.BLAKE3, buf.Bytes())
	s[c] = buf.Bytes()
	return c, s, nil
}

// FuzzLoad feeds arbitrary entry and chunk blocks (and root totals) to
// Load. Whatever it accepts must encode again into a manifest that loads
// the same.
func FuzzLoad(f *testing.F) {
	f.Fuzz(func(t *testing.T, name string, single bool, chunkShift uint8, size, chunks, entries uint64, entryBlock, chunkBlock []byte) {
		in := loadInput{name, single, chunkShift, size, chunks, entries, entryBlock, chunkBlock}
		root, blocks, err := in.blocks()
		if err != nil {
			return
		}
		m, err := Load(context.Background(), root, blocks.get)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		root2, blocks2, err := Encode(m)
		if err != nil {
			t.Fatalf("Load accepted a manifest that Encode rejects: %v\n%+v", err, m)
		}
		m2, err := Load(context.Background(), root2, blockStore(blocks2).get)
		if err != nil {
			t.Fatalf("re-encoded manifest rejected: %v", err)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("re-encoded manifest differs:\n%+v\n%+v", m, m2)
		}
		for i := range m.NumChunks() {
			if e, _ := m.Locate(i); e < 0 || m.ChunkLen(i) <= 0 {
				t.Fatalf("chunk %d: Locate %d, ChunkLen %d", i, e, m.ChunkLen(i))
			}
		}
	})
}

// seedManifest is a small valid share with a directory, files with and
// without data, and three chunks.
func seedManifest() *Manifest {
	return &Manifest{
		Name: "seed", ChunkSize: MinChunkSize, Hash: mh.BLAKE3, Size: MinChunkSize + 10, Seal: 1,
		Entries: []Entry{
			{Path: "d", Dir: true, Mode: 0o755},
			{Path: "d/big", Size: MinChunkSize + 5, Mode: 0o644, ModTime: time.Unix(1700000000, 123).UTC()},
			{Path: "d/empty", Mode: 0o600, ModTime: time.Unix(-86400, 0).UTC()},
			{Path: "e", Dir: true, Mode: 0o700},
			{Path: "f", Size: 5, Mode: 0o644},
		},
		Digests: bytes.Repeat([]byte("0123456789abcdef0123456789abcdef"), 3),
	}
}

func encodeChunkBlock(t *testing.T, start uint64, digests []byte) []byte {
	var buf bytes.Buffer
	if err := encMode.MarshalToBuffer(&chunkBlockOut{Start: start, Digests: digests}, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// fuzzSeeds returns the seed corpora: file name to arguments, per target.
func fuzzSeeds(t *testing.T) map[string]map[string][]any {
	m := seedManifest()
	root, blocks, err := Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	r, err := DecodeRoot(root, blocks[root])
	if err != nil {
		t.Fatal(err)
	}
	eb, cb := blocks[r.EntryBlocks[0]], blocks[r.ChunkBlocks[0]]
	rb := blocks[root]

	single := &Manifest{Name: "one", Single: true, ChunkSize: MinChunkSize, Hash: mh.BLAKE3, Size: 1,
		Entries: []Entry{{Path: "one", Size: 1, Mode: 0o644}}, Digests: make([]byte, 32)}
	sroot, sblocks, err := Encode(single)
	if err != nil {
		t.Fatal(err)
	}
	sr, _ := DecodeRoot(sroot, sblocks[sroot])

	valid := loadInput{"seed", false, 0, uint64(m.Size), 3, 5, eb, cb}
	mutate := func(f func(*loadInput)) []any { in := valid; f(&in); return in.args() }
	replace := func(b []byte, old, new string) []byte { return bytes.Replace(b, []byte(old), []byte(new), 1) }

	return map[string]map[string][]any{
		"FuzzDecodeRoot": {
			"valid-dir":       {rb},
			"valid-single":    {sblocks[sroot]},
			"empty":           {[]byte{}},
			"empty-map":       {[]byte{0xa0}},
			"trailing-byte":   {append(bytes.Clone(rb), 0)},
			"truncated":       {rb[:len(rb)-3]},
			"version-2":       {replace(rb, "eshoal\x01", "eshoal\x02")},
			"unsorted-keys":   {replace(rb, "dname", "dtame")},
			"indefinite-root": {append([]byte{0xbf}, append(bytes.Clone(rb[1:]), 0xff)...)},
			"huge-chunks":     {replace(rb, "fchunks\x03", "fchunks\x1b\x00\x00\x01\x00\x00\x00\x00\x00")},
		},
		"FuzzLoad": {
			"valid":          valid.args(),
			"valid-single":   loadInput{"one", true, 0, 1, 1, 1, sblocks[sr.EntryBlocks[0]], sblocks[sr.ChunkBlocks[0]]}.args(),
			"empty-dir":      loadInput{"empty", false, 2, 0, 0, 0, nil, nil}.args(),
			"dot-dot":        mutate(func(in *loadInput) { in.entryBlock = replace(in.entryBlock, "d/big", "../bi") }),
			"file-as-parent": mutate(func(in *loadInput) { in.entryBlock = replace(in.entryBlock, "ad\xf5", "ad\xf4") }),
			"unsorted":       mutate(func(in *loadInput) { in.entryBlock = replace(in.entryBlock, "af", "a0") }),
			"size-mismatch":  mutate(func(in *loadInput) { in.size++ }),
			"chunk-mismatch": mutate(func(in *loadInput) { in.chunks = 4 }),
			"short-digests":  mutate(func(in *loadInput) { in.chunkBlock = encodeChunkBlock(t, 0, make([]byte, 95)) }),
			"chunk-start":    mutate(func(in *loadInput) { in.chunkBlock = replace(in.chunkBlock, "estart\x00", "estart\x01") }),
			"trailing-data":  mutate(func(in *loadInput) { in.entryBlock = append(bytes.Clone(in.entryBlock), 0) }),
			"huge-entries":   mutate(func(in *loadInput) { in.entries = 1 << 40 }),
		},
	}
}

// TestFuzzSeeds keeps testdata/fuzz in step with the format: run with
// -update-seeds after changing the encoding.
func TestFuzzSeeds(t *testing.T) {
	for target, seeds := range fuzzSeeds(t) {
		dir := filepath.Join("testdata", "fuzz", target)
		for name, args := range seeds {
			want := corpusFile(args)
			p := filepath.Join(dir, name)
			if *updateSeeds {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, want, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			got, err := os.ReadFile(p)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s is missing or stale (%v): run go test -run TestFuzzSeeds -update-seeds", p, err)
			}
		}
	}
}

// corpusFile encodes arguments in the "go test fuzz v1" format.
func corpusFile(args []any) []byte {
	lines := []string{"go test fuzz v1"}
	for _, a := range args {
		switch v := a.(type) {
		case []byte:
			lines = append(lines, "[]byte("+strconv.Quote(string(v))+")")
		case string:
			lines = append(lines, "string("+strconv.Quote(v)+")")
		case bool:
			lines = append(lines, fmt.Sprintf("bool(%t)", v))
		case uint8:
			lines = append(lines, fmt.Sprintf("byte(%q)", v))
		case uint64:
			lines = append(lines, fmt.Sprintf("uint64(%d)", v))
		default:
			panic(fmt.Sprintf("corpusFile: %T", a))
		}
	}
	return []byte(strings.Join(lines, "\n") + "\n")
}

// The seeds that should decode do, and the malformed ones do not: the
// corpus exercises both paths.
func TestFuzzSeedsMeaning(t *testing.T) {
	seeds := fuzzSeeds(t)
	for name, args := range seeds["FuzzDecodeRoot"] {
		data := args[0].([]byte)
		_, err := DecodeRoot(blockCID(mh.BLAKE3, data), data)
		if valid := strings.HasPrefix(name, "valid"); valid != (err == nil) {
			t.Errorf("FuzzDecodeRoot seed %s: %v", name, err)
		}
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range seeds["FuzzLoad"] {
			if !yield(n) {
				return
			}
		}
	})
	for _, name := range names {
		a := seeds["FuzzLoad"][name]
		in := loadInput{a[0].(string), a[1].(bool), a[2].(uint8), a[3].(uint64), a[4].(uint64), a[5].(uint64), a[6].([]byte), a[7].([]byte)}
		root, blocks, err := in.blocks()
		if err == nil {
			_, err = Load(context.Background(), root, blocks.get)
		}
		if valid := strings.HasPrefix(name, "valid") || name == "empty-dir"; valid != (err == nil) {
			t.Errorf("FuzzLoad seed %s: %v", name, err)
		}
	}
}
