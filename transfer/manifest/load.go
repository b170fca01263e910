package manifest

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/ipfs/go-cid"
)

// Root is a decoded root block: the share's parameters, its totals, and the
// CIDs of its entry and chunk blocks, in order.
type Root struct {
	Name        string
	Single      bool
	ChunkSize   int64
	Hash        uint64
	Size        int64
	Chunks      int64
	Entries     int64
	EntryBlocks []cid.Cid
	ChunkBlocks []cid.Cid
	Seal        int // see Manifest.Seal
}

// minEntrySize is the smallest encoded entry: {"d":false,"m":0,"p":"x","s":0}.
const minEntrySize = 1 + 3 + 3 + 4 + 3

// maxEntriesPerBlock bounds the entries one valid entry block can hold.
const maxEntriesPerBlock = MaxBlockSize / minEntrySize

// checkCID verifies that c may name a manifest block: a CIDv1 with codec
// dag-cbor and a 32-byte BLAKE3 or SHA2-256 multihash (ErrInvalid
// otherwise).
func checkCID(what string, c cid.Cid) error {
	if !c.Defined() {
		return fmt.Errorf("%w: %s: undefined CID", ErrInvalid, what)
	}
	p := c.Prefix()
	switch {
	case p.Version != 1:
		return fmt.Errorf("%w: %s: CID %s is version %d, want 1", ErrInvalid, what, c, p.Version)
	case p.Codec != cid.DagCBOR:
		return fmt.Errorf("%w: %s: CID %s has codec %#x, want dag-cbor (0x71)", ErrInvalid, what, c, p.Codec)
	case checkHash(p.MhType) != nil || p.MhLength != DigestSize:
		return fmt.Errorf("%w: %s: CID %s has multihash %#x of %d bytes, want a 32-byte BLAKE3 or SHA2-256 digest",
			ErrInvalid, what, c, p.MhType, p.MhLength)
	}
	return nil
}

// checkBlock verifies c with checkCID, then that data is at most
// MaxBlockSize bytes (ErrInvalid) and hashes to c (ErrHashMismatch).
func checkBlock(what string, c cid.Cid, data []byte) error {
	if err := checkCID(what, c); err != nil {
		return err
	}
	if len(data) > MaxBlockSize {
		return fmt.Errorf("%w: %s %s is %d bytes, more than the limit of %d", ErrInvalid, what, c, len(data), MaxBlockSize)
	}
	if blockCID(c.Prefix().MhType, data) != c {
		return fmt.Errorf("%w: %s %s (%d bytes received)", ErrHashMismatch, what, c, len(data))
	}
	return nil
}

// decodeBlock checks the strict encoding of a block and decodes it into v.
func decodeBlock(data []byte, v any, required ...string) error {
	if err := checkStrict(data, required...); err != nil {
		return err
	}
	return decMode.Unmarshal(data, v)
}

// DecodeRoot verifies that data is the root block c (see Load for the
// errors) and decodes and checks it: version, name, chunk size, hash, and
// totals consistent with the number of child blocks. It does not fetch the
// child blocks. It is safe for concurrent use.
func DecodeRoot(c cid.Cid, data []byte) (*Root, error) {
	if err := checkBlock("root block", c, data); err != nil {
		return nil, err
	}
	r, err := decodeRoot(c, data)
	if err != nil {
		return nil, fmt.Errorf("%w: root block %s: %v", ErrInvalid, c, err)
	}
	return r, nil
}

func decodeRoot(c cid.Cid, data []byte) (*Root, error) {
	var in rootIn
	if err := decodeBlock(data, &in, "shoal", "name", "single", "chunkSize", "hash", "size", "chunks", "entries", "entryBlocks", "chunkBlocks"); err != nil {
		return nil, err
	}
	if in.Shoal != 1 {
		return nil, fmt.Errorf("format version %d, want 1 (is the software too old?)", in.Shoal)
	}
	if err := checkComponent(in.Name); err != nil {
		return nil, fmt.Errorf("name %s: %v", shorten(in.Name), err)
	}
	if in.Seal > 255 {
		return nil, fmt.Errorf("seal version %d out of range", in.Seal)
	}
	r := &Root{Name: in.Name, Single: in.Single, Hash: in.Hash, Seal: int(in.Seal)}
	var err error
	if r.ChunkSize, err = toInt64(in.ChunkSize, "chunkSize"); err != nil {
		return nil, err
	}
	if err := checkChunkSize(r.ChunkSize); err != nil {
		return nil, err
	}
	if mt := c.Prefix().MhType; r.Hash != mt {
		return nil, fmt.Errorf("hash %#x differs from the root CID's %s", r.Hash, hashName(mt))
	}
	if r.Size, err = toInt64(in.Size, "size"); err != nil {
		return nil, err
	}
	if r.Chunks, err = toInt64(in.Chunks, "chunks"); err != nil {
		return nil, err
	}
	if r.Entries, err = toInt64(in.Entries, "entries"); err != nil {
		return nil, err
	}
	// Totals must be possible for the number of child blocks, so that no
	// later allocation follows a count nothing backs.
	if want := (r.Chunks + DigestsPerBlock - 1) / DigestsPerBlock; int64(len(in.ChunkBlocks)) != want {
		return nil, fmt.Errorf("%d chunk blocks for %d chunks, want %d", len(in.ChunkBlocks), r.Chunks, want)
	}
	if n := int64(len(in.EntryBlocks)); n > r.Entries || r.Entries > n*maxEntriesPerBlock {
		return nil, fmt.Errorf("%d entry blocks cannot hold %d entries", n, r.Entries)
	}
	if r.Chunks > r.Size || r.Size > 0 && r.Chunks == 0 || r.Size/r.ChunkSize > r.Chunks {
		return nil, fmt.Errorf("%d chunks of %d bytes cannot hold %d bytes", r.Chunks, r.ChunkSize, r.Size)
	}
	if r.Single && r.Entries != 1 {
		return nil, fmt.Errorf("single-file share with %d entries", r.Entries)
	}
	if r.EntryBlocks, err = childCIDs(in.EntryBlocks, r.Hash, "entry"); err != nil {
		return nil, err
	}
	if r.ChunkBlocks, err = childCIDs(in.ChunkBlocks, r.Hash, "chunk"); err != nil {
		return nil, err
	}
	return r, nil
}

func childCIDs(links []link, hash uint64, kind string) ([]cid.Cid, error) {
	cids := make([]cid.Cid, len(links))
	for i, l := range links {
		p := l.c.Prefix()
		if p.Version != 1 || p.Codec != cid.DagCBOR || p.MhType != hash || p.MhLength != DigestSize {
			return nil, fmt.Errorf("%s block %d: CID %s is not a CIDv1 dag-cbor %s CID", kind, i, l.c, hashName(hash))
		}
		cids[i] = l.c
	}
	return cids, nil
}

// Load fetches, verifies and decodes the manifest whose root block is root,
// for a fetcher that receives blocks from untrusted peers. get returns a
// block's bytes; Load calls it for the root, then for every entry block and
// every chunk block, in order, from the calling goroutine, and returns its
// errors wrapped (with the block named). Load stops early when ctx ends.
// It is safe for concurrent use if get is.
//
// Every block is checked against its CID: a CID that is not CIDv1 dag-cbor
// with a 32-byte BLAKE3 or SHA2-256 multihash, or a block over MaxBlockSize,
// gives ErrInvalid; bytes that do not hash to the CID give
// ErrHashMismatch. Then the whole manifest is validated (see the package
// documentation); any violation gives an error wrapping ErrInvalid that
// says what is wrong. Memory grows with the blocks actually received, never
// with a count that the blocks do not back.
func Load(ctx context.Context, root cid.Cid, get func(ctx context.Context, c cid.Cid) ([]byte, error)) (*Manifest, error) {
	data, err := fetch(ctx, get, root, "root block", false)
	if err != nil {
		return nil, err
	}
	r, err := DecodeRoot(root, data)
	if err != nil {
		return nil, err
	}
	m := &Manifest{
		Name:      r.Name,
		Single:    r.Single,
		ChunkSize: r.ChunkSize,
		Hash:      r.Hash,
		Size:      r.Size,
		Seal:      r.Seal,
		Entries:   make([]Entry, 0, min(r.Entries, 1<<14)),
		Digests:   make([]byte, 0, min(r.Chunks*DigestSize, 1<<20)),
	}
	check := entryChecker{chunkSize: r.ChunkSize}
	for i, c := range r.EntryBlocks {
		what := fmt.Sprintf("entry block %d", i)
		data, err := fetch(ctx, get, c, what, true)
		if err != nil {
			return nil, err
		}
		var b entryBlockIn
		if err := decodeBlock(data, &b, "start", "entries"); err != nil {
			return nil, invalid(what, c, "%v", err)
		}
		n := int64(len(m.Entries))
		switch {
		case b.Start != uint64(n):
			return nil, invalid(what, c, "starts at entry %d, want %d", b.Start, n)
		case len(b.Entries) == 0:
			return nil, invalid(what, c, "no entries")
		case int64(len(b.Entries)) > r.Entries-n:
			return nil, invalid(what, c, "more entries than the %d the root declares", r.Entries)
		}
		for j, in := range b.Entries {
			e, err := entryFromWire(in)
			if err == nil {
				err = check.add(&e)
			}
			if err != nil {
				return nil, invalid(what, c, "entry %d %s: %v", n+int64(j), shorten(in.P), err)
			}
			m.Entries = append(m.Entries, e)
		}
	}
	switch {
	case int64(len(m.Entries)) != r.Entries:
		return nil, invalid("root block", root, "declares %d entries, the entry blocks hold %d", r.Entries, len(m.Entries))
	case check.size != r.Size:
		return nil, invalid("root block", root, "declares %d bytes, the entries hold %d", r.Size, check.size)
	case check.chunks != r.Chunks:
		return nil, invalid("root block", root, "declares %d chunks, the entries hold %d", r.Chunks, check.chunks)
	case r.Single && (check.files != 1 || m.Entries[0].Path != r.Name):
		return nil, invalid("root block", root, "single-file share whose entry is not a file named %q", r.Name)
	}
	for i, c := range r.ChunkBlocks {
		what := fmt.Sprintf("chunk block %d", i)
		data, err := fetch(ctx, get, c, what, true)
		if err != nil {
			return nil, err
		}
		var b chunkBlockIn
		if err := decodeBlock(data, &b, "start", "digests"); err != nil {
			return nil, invalid(what, c, "%v", err)
		}
		start := int64(i) * DigestsPerBlock
		want := min(r.Chunks-start, DigestsPerBlock)
		switch {
		case b.Start != uint64(start):
			return nil, invalid(what, c, "starts at chunk %d, want %d", b.Start, start)
		case len(b.Digests)%DigestSize != 0:
			return nil, invalid(what, c, "digests field of %d bytes is not a multiple of %d", len(b.Digests), DigestSize)
		case int64(len(b.Digests)/DigestSize) != want:
			return nil, invalid(what, c, "holds %d digests, want %d", len(b.Digests)/DigestSize, want)
		}
		m.Digests = append(m.Digests, b.Digests...)
	}
	return m, nil
}

func entryFromWire(in entryIn) (Entry, error) {
	e := Entry{Path: in.P, Dir: in.D.v}
	if !in.D.ok {
		return e, fmt.Errorf("missing %q", "d")
	}
	if !in.S.ok {
		return e, fmt.Errorf("missing %q", "s")
	}
	size, err := toInt64(in.S.v, "s")
	if err != nil {
		return e, err
	}
	if !in.M.ok {
		return e, fmt.Errorf("missing %q", "m")
	}
	if in.M.v > math.MaxUint32 || in.M.v&^0o777 != 0 {
		return e, fmt.Errorf("mode %#o has bits other than permissions (0o777)", in.M.v)
	}
	e.Size, e.Mode = size, fsMode(in.M.v)
	if in.T.ok {
		e.ModTime = time.Unix(0, in.T.v).UTC()
	}
	return e, nil
}

func invalid(what string, c cid.Cid, format string, args ...any) error {
	return fmt.Errorf("%w: %s %s: %s", ErrInvalid, what, c, fmt.Sprintf(format, args...))
}

// fetch gets block c and, if check is set, verifies it against c.
func fetch(ctx context.Context, get func(context.Context, cid.Cid) ([]byte, error), c cid.Cid, what string, check bool) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkCID(what, c); err != nil {
		return nil, err
	}
	data, err := get(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("manifest: fetching %s %s: %w", what, c, err)
	}
	if check {
		if err := checkBlock(what, c, data); err != nil {
			return nil, err
		}
	}
	return data, nil
}
