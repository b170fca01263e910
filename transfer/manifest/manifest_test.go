package manifest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/ipld/go-ipld-prime/codec/dagcbor"
	"github.com/ipld/go-ipld-prime/node/basicnode"
	mh "github.com/multiformats/go-multihash"
	"lukechampine.com/blake3"
)

const cs = MinChunkSize

// makeTree creates the test share and returns its root and the entries
// expected, in share order.
func makeTree(t *testing.T) (string, []Entry) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "share")
	writeFile(t, root, "a.txt", cs+1, 0o644, 1)
	writeFile(t, root, "a/b/deep.bin", 3*cs+5, 0o600, 2)
	writeFile(t, root, "a/empty.dat", 0, 0o644, 3)
	writeFile(t, root, "a/x", cs-1, 0o755, 4)
	writeFile(t, root, "a-b", 1, 0o600, 5)
	writeFile(t, root, "z", cs, 0o644, 6)
	mkdir(t, root, "emptydir", 0o700)
	mkdir(t, root, "a/b", 0o755)
	mkdir(t, root, "a", 0o750)
	// Share order: a directory is followed by everything below it.
	return root, []Entry{
		{Path: "a", Dir: true, Mode: 0o750, FirstChunk: 0},
		{Path: "a/b", Dir: true, Mode: 0o755, FirstChunk: 0},
		{Path: "a/b/deep.bin", Size: 3*cs + 5, Mode: 0o600, FirstChunk: 0},
		{Path: "a/empty.dat", Size: 0, Mode: 0o644, FirstChunk: 4},
		{Path: "a/x", Size: cs - 1, Mode: 0o755, FirstChunk: 4},
		{Path: "a-b", Size: 1, Mode: 0o600, FirstChunk: 5},
		{Path: "a.txt", Size: cs + 1, Mode: 0o644, FirstChunk: 6},
		{Path: "emptydir", Dir: true, Mode: 0o700, FirstChunk: 8},
		{Path: "z", Size: cs, Mode: 0o644, FirstChunk: 8},
	}
}

func TestRoundTripTree(t *testing.T) {
	dir, want := makeTree(t)
	res, err := BuildFromPath(context.Background(), dir, BuildOptions{ChunkSize: cs})
	if err != nil {
		t.Fatal(err)
	}
	m := res.Manifest
	if !reflect.DeepEqual(m.Entries, want) {
		t.Fatalf("entries:\n got %+v\nwant %+v", m.Entries, want)
	}
	if m.Name != "share" || m.Single || m.ChunkSize != cs || m.Hash != mh.BLAKE3 || m.NumChunks() != 9 {
		t.Fatalf("manifest header: %+v", m)
	}
	var size int64
	for _, e := range want {
		size += e.Size
	}
	if m.Size != size {
		t.Fatalf("size %d, want %d", m.Size, size)
	}
	for c, data := range res.Blocks {
		if len(data) > MaxBlockSize {
			t.Errorf("block %s is %d bytes", c, len(data))
		}
	}
	if len(res.Blocks) != 3 {
		t.Errorf("%d blocks, want root + 1 entry block + 1 chunk block", len(res.Blocks))
	}
	var files []string
	for _, f := range res.Files {
		rel, _ := filepath.Rel(dir, f.Path)
		files = append(files, filepath.ToSlash(rel))
		info, err := os.Stat(f.Path)
		if err != nil || info.Size() != f.Size || !info.ModTime().Equal(f.ModTime) {
			t.Errorf("FileStat %+v does not match the file (%v)", f, err)
		}
	}
	if got := strings.Join(files, " "); got != "a/b/deep.bin a/empty.dat a/x a-b a.txt z" {
		t.Errorf("Files: %s", got)
	}

	loaded, err := Load(context.Background(), res.Root, blockStore(res.Blocks).get)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(loaded, m) {
		t.Fatalf("Load gives\n%+v\nBuildFromPath gave\n%+v", loaded, m)
	}
	r, err := DecodeRoot(res.Root, res.Blocks[res.Root])
	if err != nil {
		t.Fatal(err)
	}
	if r.Chunks != 9 || r.Entries != int64(len(want)) || r.Size != size || len(r.ChunkBlocks) != 1 || len(r.EntryBlocks) != 1 {
		t.Errorf("root %+v", r)
	}

	// Every chunk: where it is, how long, its digest, its CID, Verify.
	type pos struct {
		entry int
		off   int64
	}
	wantPos := []pos{{2, 0}, {2, cs}, {2, 2 * cs}, {2, 3 * cs}, {4, 0}, {5, 0}, {6, 0}, {6, cs}, {8, 0}}
	for i := range m.NumChunks() {
		e, off := m.Locate(i)
		if (pos{e, off}) != wantPos[i] {
			t.Fatalf("Locate(%d) = %d, %d; want %v", i, e, off, wantPos[i])
		}
		data, err := os.ReadFile(filepath.Join(dir, m.Entries[e].Path))
		if err != nil {
			t.Fatal(err)
		}
		chunk := data[off:min(off+cs, int64(len(data)))]
		if m.ChunkLen(i) != int64(len(chunk)) {
			t.Fatalf("ChunkLen(%d) = %d, want %d", i, m.ChunkLen(i), len(chunk))
		}
		if sum := blake3.Sum256(chunk); !bytes.Equal(m.Digest(i), sum[:]) {
			t.Fatalf("chunk %d: digest %x, blake3 %x", i, m.Digest(i), sum)
		}
		c := m.ChunkCID(i)
		if p := c.Prefix(); p.Version != 1 || p.Codec != cid.Raw || p.MhType != mh.BLAKE3 || p.MhLength != 32 {
			t.Fatalf("chunk CID prefix %+v", p)
		}
		want, err := (cid.V1Builder{Codec: cid.Raw, MhType: mh.BLAKE3}).Sum(chunk)
		if err != nil || c != want {
			t.Fatalf("ChunkCID(%d) = %s, go-cid computes %s (%v)", i, c, want, err)
		}
		if err := m.Verify(i, chunk); err != nil {
			t.Fatalf("Verify(%d): %v", i, err)
		}
		bad := bytes.Clone(chunk)
		bad[len(bad)/2] ^= 1
		if err := m.Verify(i, bad); !errors.Is(err, ErrChunkMismatch) {
			t.Fatalf("Verify(%d) of a flipped byte: %v", i, err)
		}
		if err := m.Verify(i, chunk[:len(chunk)-1]); !errors.Is(err, ErrChunkMismatch) {
			t.Fatalf("Verify(%d) of a short chunk: %v", i, err)
		}
	}
	for _, i := range []int64{-1, m.NumChunks()} {
		if e, _ := m.Locate(i); e != -1 || m.ChunkLen(i) != 0 || m.Digest(i) != nil || m.ChunkCID(i).Defined() || m.Verify(i, nil) == nil {
			t.Errorf("chunk %d out of range is not reported as such", i)
		}
	}
}

func TestSingleFile(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "image.iso", 2*cs+7, 0o640, 9)
	res, err := BuildFromPath(context.Background(), p, BuildOptions{ChunkSize: cs, Hash: mh.SHA2_256, Workers: 3})
	if err != nil {
		t.Fatal(err)
	}
	m := res.Manifest
	want := []Entry{{Path: "image.iso", Size: 2*cs + 7, Mode: 0o640}}
	if !m.Single || m.Name != "image.iso" || !reflect.DeepEqual(m.Entries, want) || m.NumChunks() != 3 {
		t.Fatalf("manifest %+v", m)
	}
	data := pattern(2*cs+7, 9)
	for i := range int64(3) {
		chunk := data[i*cs : min((i+1)*cs, int64(len(data)))]
		if sum := sha256.Sum256(chunk); !bytes.Equal(m.Digest(i), sum[:]) {
			t.Fatalf("chunk %d: digest %x, sha256 %x", i, m.Digest(i), sum)
		}
		if err := m.Verify(i, chunk); err != nil {
			t.Fatal(err)
		}
		if p := m.ChunkCID(i).Prefix(); p.MhType != mh.SHA2_256 {
			t.Fatalf("chunk CID hash %#x", p.MhType)
		}
	}
	loaded, err := Load(context.Background(), res.Root, blockStore(res.Blocks).get)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(loaded, m) {
		t.Fatalf("Load gives %+v, want %+v", loaded, m)
	}
	if len(res.Files) != 1 || res.Files[0].Path != p {
		t.Fatalf("Files %+v", res.Files)
	}

	// An empty single file: one entry, no chunks, no chunk block.
	empty := writeFile(t, dir, "empty", 0, 0o644, 0)
	res, err = BuildFromPath(context.Background(), empty, BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Manifest.NumChunks() != 0 || len(res.Blocks) != 2 {
		t.Fatalf("empty file: %d chunks, %d blocks", res.Manifest.NumChunks(), len(res.Blocks))
	}
	if _, err := Load(context.Background(), res.Root, blockStore(res.Blocks).get); err != nil {
		t.Fatal(err)
	}
}

func TestEmptyDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nothing")
	mkdir(t, dir, ".", 0o755)
	res, err := BuildFromPath(context.Background(), dir, BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Manifest.Entries) != 0 || len(res.Blocks) != 1 {
		t.Fatalf("%d entries, %d blocks", len(res.Manifest.Entries), len(res.Blocks))
	}
	m, err := Load(context.Background(), res.Root, blockStore(res.Blocks).get)
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "nothing" || m.Single || len(m.Entries) != 0 {
		t.Fatalf("%+v", m)
	}
}

func TestDeterminism(t *testing.T) {
	dir, _ := makeTree(t)
	build := func(opts BuildOptions) *BuildResult {
		t.Helper()
		if opts.ChunkSize == 0 {
			opts.ChunkSize = cs
		}
		res, err := BuildFromPath(context.Background(), dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	a := build(BuildOptions{Workers: 1})
	if b := build(BuildOptions{Workers: 4}); b.Root != a.Root {
		t.Fatalf("root with 4 workers %s, with 1 worker %s", b.Root, a.Root)
	}
	if b := build(BuildOptions{}); b.Root != a.Root {
		t.Fatalf("root differs between runs: %s, %s", b.Root, a.Root)
	}
	if p := a.Root.Prefix(); p.Version != 1 || p.Codec != cid.DagCBOR || p.MhType != mh.BLAKE3 || p.MhLength != 32 {
		t.Fatalf("root CID prefix %+v", p)
	}
	if parsed, err := cid.Decode(a.Root.String()); err != nil || parsed != a.Root {
		t.Fatalf("cid.Decode(%s) = %s, %v", a.Root, parsed, err)
	}
	c := a.Manifest.ChunkCID(3)
	if parsed, err := cid.Decode(c.String()); err != nil || parsed != c {
		t.Fatalf("cid.Decode(%s) = %s, %v", c, parsed, err)
	}

	s := build(BuildOptions{Hash: mh.SHA2_256})
	if s.Root == a.Root || s.Root.Prefix().MhType != mh.SHA2_256 {
		t.Fatalf("SHA2-256 root %s (BLAKE3 root %s)", s.Root, a.Root)
	}
	if build(BuildOptions{ChunkSize: 2 * cs}).Root == a.Root {
		t.Fatal("a different chunk size gives the same root")
	}

	// One byte changed, same size: a different root.
	p := filepath.Join(dir, "a", "b", "deep.bin")
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	data[2*cs+10] ^= 0x80
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	b := build(BuildOptions{})
	if b.Root == a.Root {
		t.Fatal("changing a byte does not change the root")
	}
	if bytes.Equal(a.Manifest.Digest(2), b.Manifest.Digest(2)) || !bytes.Equal(a.Manifest.Digest(1), b.Manifest.Digest(1)) {
		t.Fatal("changing a byte of chunk 2 changes the wrong digests")
	}
	// A mode change changes the root too.
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if build(BuildOptions{}).Root == b.Root {
		t.Fatal("changing a mode does not change the root")
	}
}

// Blocks are standard dag-cbor: go-ipld-prime's codec decodes them and
// re-encodes the same bytes.
func TestDagCBORInterop(t *testing.T) {
	dir, _ := makeTree(t)
	res, err := BuildFromPath(context.Background(), dir, BuildOptions{ChunkSize: cs})
	if err != nil {
		t.Fatal(err)
	}
	for c, data := range res.Blocks {
		nb := basicnode.Prototype.Any.NewBuilder()
		if err := (dagcbor.DecodeOptions{AllowLinks: true, DontParseBeyondEnd: true}).Decode(nb, bytes.NewReader(data)); err != nil {
			t.Fatalf("go-ipld-prime cannot decode block %s: %v", c, err)
		}
		var out bytes.Buffer
		if err := dagcbor.Encode(nb.Build(), &out); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), data) {
			t.Fatalf("block %s is not canonical dag-cbor:\n ours %x\nipld  %x", c, data, out.Bytes())
		}
	}
}

// A 10 TiB single file with 1 MiB chunks, from synthetic digests: bounded
// memory, block sizes within the limit, the right block counts.
func TestTenTiB(t *testing.T) {
	const size = 10 << 40
	const chunks = size / DefaultChunkSize // 10,485,760
	var baseline runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&baseline)

	var (
		chunkBlocks, entryBlocks, blocks int
		maxBlock                         int
		maxHeap                          uint64
		root                             []byte
	)
	b, err := NewBuilder("disk.img", true, DefaultChunkSize, mh.BLAKE3, func(c cid.Cid, data []byte) error {
		blocks++
		maxBlock = max(maxBlock, len(data))
		root = data // only the last block (the root) stays referenced
		switch {
		case len(data) > DigestsPerBlock*DigestSize/2:
			chunkBlocks++
			if chunkBlocks%64 == 0 {
				var ms runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&ms)
				maxHeap = max(maxHeap, ms.HeapAlloc)
			}
		case len(data) < 200:
			entryBlocks++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.AddEntry(Entry{Path: "disk.img", Size: size, Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	batch := make([]byte, 1<<20) // 32768 digests, refilled for each batch
	for seq := uint64(0); seq < chunks; {
		n := min(uint64(len(batch)/DigestSize), chunks-seq)
		for i := range n {
			binary.LittleEndian.PutUint64(batch[i*DigestSize:], seq+i)
		}
		if err := b.AddDigests(batch[:n*DigestSize]); err != nil {
			t.Fatal(err)
		}
		seq += n
	}
	rootCID, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	wantChunkBlocks := (chunks + DigestsPerBlock - 1) / DigestsPerBlock
	if chunkBlocks != wantChunkBlocks || entryBlocks != 1 || blocks != wantChunkBlocks+2 {
		t.Fatalf("%d chunk blocks (want %d), %d entry blocks, %d blocks", chunkBlocks, wantChunkBlocks, entryBlocks, blocks)
	}
	if maxBlock > MaxBlockSize {
		t.Fatalf("a block of %d bytes", maxBlock)
	}
	// The digests alone are 320 MiB; the builder keeps about one block.
	if grew := int64(maxHeap) - int64(baseline.HeapAlloc); grew > 16<<20 {
		t.Fatalf("heap grew by %d MiB while building", grew>>20)
	}
	r, err := DecodeRoot(rootCID, root)
	if err != nil {
		t.Fatal(err)
	}
	if r.Size != size || r.Chunks != chunks || r.Entries != 1 || !r.Single || len(r.ChunkBlocks) != wantChunkBlocks || len(r.EntryBlocks) != 1 {
		t.Fatalf("root: size %d chunks %d entries %d, %d chunk blocks", r.Size, r.Chunks, r.Entries, len(r.ChunkBlocks))
	}
	t.Logf("root block %d bytes, %d chunk blocks, heap grew by at most %d KiB", len(root), len(r.ChunkBlocks), (int64(maxHeap)-int64(baseline.HeapAlloc))>>10)
}

// manyEntries returns a synthetic directory manifest with n files of long
// names in 20 directories, some with data.
func manyEntries(n int) *Manifest {
	m := &Manifest{Name: "many", ChunkSize: cs, Hash: mh.BLAKE3}
	long := strings.Repeat("n", 200)
	var chunks int64
	for d := range 20 {
		dir := fmt.Sprintf("dir-%02d", d)
		m.Entries = append(m.Entries, Entry{Path: dir, Dir: true, Mode: 0o755, FirstChunk: chunks})
		for i := d * n / 20; i < (d+1)*n/20; i++ {
			e := Entry{Path: fmt.Sprintf("%s/%s-%06d", dir, long, i), Size: int64(i%3) * 1000, Mode: 0o644, FirstChunk: chunks}
			m.Entries = append(m.Entries, e)
			chunks += e.Chunks(cs)
			m.Size += e.Size
		}
	}
	m.Digests = make([]byte, chunks*DigestSize)
	for i := range m.Digests {
		m.Digests[i] = byte(i * 7)
	}
	return m
}

func TestManyEntries(t *testing.T) {
	m := manyEntries(20000)
	root, blocks, err := Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	r, err := DecodeRoot(root, blocks[root])
	if err != nil {
		t.Fatal(err)
	}
	if len(r.EntryBlocks) < 4 {
		t.Fatalf("%d entry blocks for %d entries", len(r.EntryBlocks), r.Entries)
	}
	for i, c := range r.EntryBlocks {
		n := len(blocks[c])
		if n > MaxBlockSize || i < len(r.EntryBlocks)-1 && n < MaxBlockSize-2048 {
			t.Errorf("entry block %d is %d bytes", i, n)
		}
	}
	loaded, err := Load(context.Background(), root, blockStore(blocks).get)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(loaded, m) {
		t.Fatal("Load does not give back the encoded manifest")
	}
	for _, i := range []int64{0, 1, loaded.NumChunks() / 2, loaded.NumChunks() - 1} {
		e, off := loaded.Locate(i)
		if e < 0 || off != 0 || loaded.Entries[e].FirstChunk != i || loaded.ChunkLen(i) != loaded.Entries[e].Size {
			t.Fatalf("Locate(%d) = %d, %d", i, e, off)
		}
	}
}

func TestPathLimits(t *testing.T) {
	var dirs []string
	for i := range 16 {
		dirs = append(dirs, strings.Repeat(string(rune('a'+i)), 254))
	}
	prefix := strings.Join(dirs, "/")
	last := strings.Repeat("f", 4096-len(prefix)-1)
	m := &Manifest{Name: "deep", ChunkSize: cs, Hash: mh.BLAKE3}
	for i := range dirs {
		m.Entries = append(m.Entries, Entry{Path: strings.Join(dirs[:i+1], "/"), Dir: true})
	}
	m.Entries = append(m.Entries, Entry{Path: prefix + "/" + last})
	if n := len(m.Entries[len(m.Entries)-1].Path); n != 4096 || len(last) > 255 {
		t.Fatalf("test path is %d bytes, last component %d", n, len(last))
	}
	root, blocks, err := Encode(m)
	if err != nil {
		t.Fatalf("a 4096-byte path: %v", err)
	}
	if _, err := Load(context.Background(), root, blockStore(blocks).get); err != nil {
		t.Fatal(err)
	}
	m.Entries[len(m.Entries)-1].Path += "x"
	if _, _, err := Encode(m); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "4097 bytes") {
		t.Fatalf("a 4097-byte path: %v", err)
	}
	m.Entries = []Entry{{Path: strings.Repeat("x", 256)}}
	if _, _, err := Encode(m); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "256 bytes") {
		t.Fatalf("a 256-byte component: %v", err)
	}
}

func TestComparePaths(t *testing.T) {
	ordered := []string{"a", "a/b", "a/b/c", "a/b.txt", "a/bc", "a!", "a-b", "a.txt", "aa", "b", "é"}
	for i := range ordered {
		for j := range ordered {
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := comparePaths(ordered[i], ordered[j]); got != want {
				t.Errorf("comparePaths(%q, %q) = %d, want %d", ordered[i], ordered[j], got, want)
			}
		}
	}
}

func TestBuilderErrors(t *testing.T) {
	discard := func(cid.Cid, []byte) error { return nil }
	if _, err := NewBuilder("a/b", false, cs, mh.BLAKE3, discard); !errors.Is(err, ErrInvalid) {
		t.Errorf("name with a slash: %v", err)
	}
	if _, err := NewBuilder("..", false, cs, mh.BLAKE3, discard); !errors.Is(err, ErrInvalid) {
		t.Errorf("name ..: %v", err)
	}
	for _, size := range []int64{0, 128 << 10, 3 << 18, 32 << 20} {
		if _, err := NewBuilder("s", false, size, mh.BLAKE3, discard); !errors.Is(err, ErrInvalid) {
			t.Errorf("chunk size %d: %v", size, err)
		}
	}
	if _, err := NewBuilder("s", false, cs, mh.MD5, discard); !errors.Is(err, ErrInvalid) {
		t.Errorf("MD5: %v", err)
	}

	newB := func() *Builder {
		b, err := NewBuilder("s", false, cs, mh.BLAKE3, discard)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	b := newB()
	if err := b.AddEntry(Entry{Path: "b"}); err != nil {
		t.Fatal(err)
	}
	if err := b.AddEntry(Entry{Path: "a"}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "out of order") {
		t.Errorf("unsorted: %v", err)
	}
	if err := b.AddEntry(Entry{Path: "c"}); err == nil {
		t.Error("the builder goes on after an error")
	}

	b = newB()
	if err := b.AddEntry(Entry{Path: "f", Size: cs + 1}); err != nil {
		t.Fatal(err)
	}
	if err := b.AddDigests(make([]byte, 33)); !errors.Is(err, ErrInvalid) {
		t.Errorf("33 bytes of digests: %v", err)
	}
	b = newB()
	if err := b.AddEntry(Entry{Path: "f", Size: cs + 1}); err != nil {
		t.Fatal(err)
	}
	if err := b.AddDigests(make([]byte, DigestSize)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Finish(); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "1 chunk digests for entries holding 2 chunks") {
		t.Errorf("missing digest: %v", err)
	}
	b = newB()
	if _, err := b.Finish(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Finish(); err == nil {
		t.Error("Finish twice succeeds")
	}

	single := func(entries ...Entry) error {
		b, err := NewBuilder("s", true, cs, mh.BLAKE3, discard)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if err := b.AddEntry(e); err != nil {
				return err
			}
		}
		_, err = b.Finish()
		return err
	}
	if err := single(Entry{Path: "s"}); err != nil {
		t.Errorf("single: %v", err)
	}
	for _, entries := range [][]Entry{{}, {{Path: "t"}}, {{Path: "s", Dir: true}}, {{Path: "s"}, {Path: "t"}}} {
		if err := single(entries...); !errors.Is(err, ErrInvalid) {
			t.Errorf("single-file share with %+v: %v", entries, err)
		}
	}

	emitErr := errors.New("disk full")
	b, _ = NewBuilder("s", false, cs, mh.BLAKE3, func(cid.Cid, []byte) error { return emitErr })
	if _, err := b.Finish(); !errors.Is(err, emitErr) {
		t.Errorf("emit error: %v", err)
	}

	m := manyEntries(100)
	m.Size++
	if _, _, err := Encode(m); !errors.Is(err, ErrInvalid) {
		t.Errorf("Encode with a wrong Size: %v", err)
	}
}

// Once the root could not list every child block, the builder fails with
// ErrTooLarge before emitting more. The limit is lowered to keep the test
// small; the real one (MaxBlockSize) is about 25,000 child blocks.
func TestTooLarge(t *testing.T) {
	var emitted int
	b, err := NewBuilder("big", true, MinChunkSize, mh.BLAKE3, func(cid.Cid, []byte) error { emitted++; return nil })
	if err != nil {
		t.Fatal(err)
	}
	b.rootLimit = 200 + 3 + 10*linkSize(blockCID(mh.BLAKE3, nil))
	const chunks = 12 * DigestsPerBlock
	if err := b.AddEntry(Entry{Path: "big", Size: chunks * MinChunkSize}); err != nil {
		t.Fatal(err)
	}
	batch := make([]byte, DigestsPerBlock*DigestSize)
	for range 12 {
		if err = b.AddDigests(batch); err != nil {
			break
		}
	}
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	if emitted != 10 {
		t.Errorf("%d blocks emitted before ErrTooLarge, want 10", emitted)
	}
	if _, err := b.Finish(); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Finish after ErrTooLarge: %v", err)
	}
}

func TestEntryChunks(t *testing.T) {
	for _, c := range []struct {
		e    Entry
		want int64
	}{
		{Entry{Size: 0}, 0}, {Entry{Size: 1}, 1}, {Entry{Size: cs}, 1}, {Entry{Size: cs + 1}, 2},
		{Entry{Size: 10 * cs}, 10}, {Entry{Dir: true}, 0}, {Entry{Size: -5}, 0},
	} {
		if got := c.e.Chunks(cs); got != c.want {
			t.Errorf("%+v.Chunks = %d, want %d", c.e, got, c.want)
		}
	}
}

// A share built with Times records every entry's time to the nanosecond
// (times before 1970 too); Load returns them, they encode again to the
// same root, and the root differs from the share without times.
func TestTimes(t *testing.T) {
	dir, want := makeTree(t)
	base := time.Date(2019, 3, 14, 15, 9, 26, 535897932, time.UTC)
	for i := len(want) - 1; i >= 0; i-- { // deepest first: a file's time is set before its directory's
		tm := base.Add(time.Duration(i) * 36 * time.Hour)
		if i == 1 {
			tm = time.Date(1969, 7, 20, 20, 17, 40, 123, time.UTC)
		}
		want[i].ModTime = tm
		if err := os.Chtimes(filepath.Join(dir, want[i].Path), tm, tm); err != nil {
			t.Fatal(err)
		}
	}
	plain, err := BuildFromPath(context.Background(), dir, BuildOptions{ChunkSize: cs})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range plain.Manifest.Entries {
		if !e.ModTime.IsZero() {
			t.Fatalf("%s: time %v recorded without Times", e.Path, e.ModTime)
		}
	}
	res, err := BuildFromPath(context.Background(), dir, BuildOptions{ChunkSize: cs, Times: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Root == plain.Root {
		t.Fatal("recording times left the root unchanged")
	}
	m, err := Load(context.Background(), res.Root, blockStore(res.Blocks).get)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range m.Entries {
		if !e.ModTime.Equal(want[i].ModTime) || !res.Manifest.Entries[i].ModTime.Equal(want[i].ModTime) {
			t.Errorf("%s: loaded time %v, built %v, want %v", e.Path, e.ModTime, res.Manifest.Entries[i].ModTime, want[i].ModTime)
		}
	}
	if again, _, err := Encode(m); err != nil || again != res.Root {
		t.Fatalf("loaded manifest encodes to %v (%v), want %v", again, err, res.Root)
	}

	// A single file keeps its time too.
	f := filepath.Join(dir, "a.txt")
	single, err := BuildFromPath(context.Background(), f, BuildOptions{ChunkSize: cs, Times: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := single.Manifest.Entries[0].ModTime; !got.Equal(want[6].ModTime) {
		t.Fatalf("single file time %v, want %v", got, want[6].ModTime)
	}

	// A time a nanosecond count cannot hold is refused, not wrapped.
	b, err := NewBuilder("x", true, cs, mh.BLAKE3, func(cid.Cid, []byte) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	err = b.AddEntry(Entry{Path: "x", Size: 1, ModTime: time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "1678 to 2262") {
		t.Fatalf("time in 2300: %v", err)
	}
}

// An encrypted share says so in its root (seal); a plaintext one keeps the
// root it always had.
func TestSeal(t *testing.T) {
	dir, _ := makeTree(t)
	plain, err := BuildFromPath(context.Background(), dir, BuildOptions{ChunkSize: cs})
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := BuildFromPath(context.Background(), dir, BuildOptions{ChunkSize: cs, Seal: 1})
	if err != nil {
		t.Fatal(err)
	}
	if sealed.Root == plain.Root || plain.Manifest.Seal != 0 || sealed.Manifest.Seal != 1 {
		t.Fatalf("roots %v %v, seals %d %d", plain.Root, sealed.Root, plain.Manifest.Seal, sealed.Manifest.Seal)
	}
	m, err := Load(context.Background(), sealed.Root, blockStore(sealed.Blocks).get)
	if err != nil || m.Seal != 1 {
		t.Fatalf("loaded seal %v, %v", m, err)
	}
	if again, _, err := Encode(m); err != nil || again != sealed.Root {
		t.Fatalf("re-encoded: %v %v", again, err)
	}
	if bytes.Contains(plain.Blocks[plain.Root], []byte("seal")) {
		t.Fatal("a plaintext root names seal")
	}
}
