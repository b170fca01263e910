package manifest

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/ipfs/go-cid"
)

// entryBlockLimit is the size the builder fills entry blocks to, leaving a
// margin below MaxBlockSize.
const entryBlockLimit = MaxBlockSize - 1024

// Builder encodes a manifest from a stream of entries and digests with
// bounded memory (about 3 MiB plus 50 bytes per child block), whatever the
// share's size. It emits each block as soon as it is complete, child blocks
// first and the root last. A Builder is not safe for concurrent use; after
// an error or Finish, every method returns an error.
type Builder struct {
	name      string
	single    bool
	chunkSize int64
	hash      uint64
	emit      func(cid.Cid, []byte) error

	check entryChecker

	entBuf   bytes.Buffer // encoded entries of the pending entry block
	entCount int64        // entries in entBuf
	entStart int64        // index of entBuf's first entry
	entOne   bytes.Buffer // scratch: one encoded entry
	entOut   entryOut

	digests   []byte // pending chunk block's digests, cap DigestsPerBlock*DigestSize
	digStart  int64  // index of digests' first chunk
	digTotal  int64  // digests received
	blockBuf  bytes.Buffer
	rootLimit int // MaxBlockSize; lowered by tests
	linkBytes int // encoded size of the links the root will hold

	entryBlocks []link
	chunkBlocks []link
	seal        int
	err         error
}

// SetSeal records that the share's files are encrypted with version v of
// the seal format (see Manifest.Seal). Call it before Finish.
func (b *Builder) SetSeal(v int) {
	if v >= 0 && v <= 255 {
		b.seal = v
	}
}

// NewBuilder returns a Builder for a share. name is the share's name (a
// single path component); single selects a single-file share, whose one
// entry must have Path == name; chunkSize must be a power of two between
// MinChunkSize and MaxChunkSize; hash is multihash.BLAKE3 or
// multihash.SHA2_256. emit receives every block with its CID; it may keep
// the data slice, which the Builder does not reuse. An error from emit stops
// the build and is returned.
func NewBuilder(name string, single bool, chunkSize int64, hash uint64, emit func(c cid.Cid, data []byte) error) (*Builder, error) {
	if err := checkComponent(name); err != nil {
		return nil, fmt.Errorf("%w: share name %s: %v", ErrInvalid, shorten(name), err)
	}
	if err := checkChunkSize(chunkSize); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := checkHash(hash); err != nil {
		return nil, err
	}
	if emit == nil {
		return nil, errors.New("manifest: NewBuilder: nil emit function")
	}
	return &Builder{
		name:      name,
		single:    single,
		chunkSize: chunkSize,
		hash:      hash,
		emit:      emit,
		check:     entryChecker{chunkSize: chunkSize},
		rootLimit: MaxBlockSize,
	}, nil
}

// AddEntry adds the next entry. Entries must come in share order and obey
// the rules the decoder enforces (see the package documentation);
// e.FirstChunk is ignored.
func (b *Builder) AddEntry(e Entry) error {
	if b.err != nil {
		return b.err
	}
	if b.single && b.check.n > 0 {
		return b.fail(fmt.Errorf("%w: entry %s: a single-file share has exactly one entry", ErrInvalid, shorten(e.Path)))
	}
	if err := b.check.add(&e); err != nil {
		return b.fail(fmt.Errorf("%w: entry %d %s: %v", ErrInvalid, b.check.n, shorten(e.Path), err))
	}
	b.entOut = entryOut{P: e.Path, D: e.Dir, S: uint64(e.Size), M: uint64(e.Mode)}
	if !e.ModTime.IsZero() {
		t := e.ModTime.UnixNano()
		b.entOut.T = &t
	}
	b.entOne.Reset()
	if err := encMode.MarshalToBuffer(&b.entOut, &b.entOne); err != nil {
		return b.fail(fmt.Errorf("manifest: encoding entry %s: %w", shorten(e.Path), err))
	}
	if b.entCount > 0 && entryBlockSize(b.entStart, b.entCount+1, b.entBuf.Len()+b.entOne.Len()) > entryBlockLimit {
		if err := b.flushEntries(); err != nil {
			return b.fail(err)
		}
	}
	b.entBuf.Write(b.entOne.Bytes())
	b.entCount++
	return nil
}

// entryBlockSize is the encoded size of an entry block with n entries
// taking entryBytes, the first of which has index start.
func entryBlockSize(start, n int64, entryBytes int) int {
	return 1 + 1 + len("start") + headSize(uint64(start)) + 1 + len("entries") + headSize(uint64(n)) + entryBytes
}

// AddDigests adds chunk digests, in global chunk order. len(d) must be a
// multiple of DigestSize. Calls may interleave with AddEntry in any way: the
// digest count is checked against the entries by Finish. d is not retained.
func (b *Builder) AddDigests(d []byte) error {
	if b.err != nil {
		return b.err
	}
	if len(d)%DigestSize != 0 {
		return b.fail(fmt.Errorf("%w: %d bytes of digests is not a multiple of %d", ErrInvalid, len(d), DigestSize))
	}
	for len(d) > 0 {
		if b.digests == nil {
			b.digests = make([]byte, 0, DigestsPerBlock*DigestSize)
		}
		n := min(len(d), cap(b.digests)-len(b.digests))
		b.digests = append(b.digests, d[:n]...)
		b.digTotal += int64(n / DigestSize)
		d = d[n:]
		if len(b.digests) == cap(b.digests) {
			if err := b.flushDigests(); err != nil {
				return b.fail(err)
			}
		}
	}
	return nil
}

// Finish checks that the digests match the chunks of the entries, emits
// the last child blocks and the root, and returns the root's CID.
func (b *Builder) Finish() (root cid.Cid, err error) {
	if b.err != nil {
		return cid.Undef, b.err
	}
	defer func() {
		if err == nil {
			b.err = errors.New("manifest: Builder.Finish called twice")
		}
	}()
	if b.digTotal != b.check.chunks {
		return cid.Undef, b.fail(fmt.Errorf("%w: %d chunk digests for entries holding %d chunks", ErrInvalid, b.digTotal, b.check.chunks))
	}
	if b.single && (b.check.n != 1 || b.check.files != 1 || b.check.prev != b.name) {
		return cid.Undef, b.fail(fmt.Errorf("%w: a single-file share needs exactly one file entry, named %q", ErrInvalid, b.name))
	}
	if err := b.flushEntries(); err != nil {
		return cid.Undef, b.fail(err)
	}
	if err := b.flushDigests(); err != nil {
		return cid.Undef, b.fail(err)
	}
	r := rootOut{
		Shoal:       1,
		Name:        b.name,
		Single:      b.single,
		ChunkSize:   uint64(b.chunkSize),
		Hash:        b.hash,
		Size:        uint64(b.check.size),
		Chunks:      uint64(b.check.chunks),
		Entries:     uint64(b.check.n),
		EntryBlocks: b.entryBlocks,
		ChunkBlocks: b.chunkBlocks,
		Seal:        uint64(b.seal),
	}
	if r.EntryBlocks == nil {
		r.EntryBlocks = []link{}
	}
	if r.ChunkBlocks == nil {
		r.ChunkBlocks = []link{}
	}
	data, err := b.encode(&r)
	if err != nil {
		return cid.Undef, b.fail(err)
	}
	if len(data) > b.rootLimit {
		return cid.Undef, b.fail(fmt.Errorf("%w: the root block would be %d bytes, more than %d: use a larger chunk size", ErrTooLarge, len(data), b.rootLimit))
	}
	c := blockCID(b.hash, data)
	if err := b.emit(c, data); err != nil {
		return cid.Undef, b.fail(err)
	}
	return c, nil
}

func (b *Builder) fail(err error) error {
	b.err = err
	return err
}

func (b *Builder) encode(v any) ([]byte, error) {
	b.blockBuf.Reset()
	if err := encMode.MarshalToBuffer(v, &b.blockBuf); err != nil {
		return nil, fmt.Errorf("manifest: encoding a block: %w", err)
	}
	return bytes.Clone(b.blockBuf.Bytes()), nil
}

func (b *Builder) flushEntries() error {
	if b.entCount == 0 {
		return nil
	}
	arr := appendHead(make([]byte, 0, 9+b.entBuf.Len()), majorArray, uint64(b.entCount))
	arr = append(arr, b.entBuf.Bytes()...)
	data, err := b.encode(&entryBlockOut{Start: uint64(b.entStart), Entries: arr})
	if err != nil {
		return err
	}
	c, err := b.emitChild(data)
	if err != nil {
		return err
	}
	b.entryBlocks = append(b.entryBlocks, link{c})
	b.entStart += b.entCount
	b.entCount = 0
	b.entBuf.Reset()
	return nil
}

func (b *Builder) flushDigests() error {
	if len(b.digests) == 0 {
		return nil
	}
	data, err := b.encode(&chunkBlockOut{Start: uint64(b.digStart), Digests: b.digests})
	if err != nil {
		return err
	}
	c, err := b.emitChild(data)
	if err != nil {
		return err
	}
	b.chunkBlocks = append(b.chunkBlocks, link{c})
	b.digStart += int64(len(b.digests) / DigestSize)
	b.digests = b.digests[:0]
	return nil
}

// emitChild emits an entry or chunk block, failing early with ErrTooLarge
// once the root could not list all child blocks.
func (b *Builder) emitChild(data []byte) (cid.Cid, error) {
	if len(data) > MaxBlockSize {
		return cid.Undef, fmt.Errorf("manifest: internal error: a %d-byte block exceeds the limit", len(data))
	}
	c := blockCID(b.hash, data)
	b.linkBytes += linkSize(c)
	// Everything in the root but the links and the name takes < 200 bytes.
	if b.linkBytes+len(b.name)+200 > b.rootLimit {
		return cid.Undef, fmt.Errorf("%w: more than %d child blocks do not fit in the root block: use a larger chunk size",
			ErrTooLarge, len(b.entryBlocks)+len(b.chunkBlocks))
	}
	if err := b.emit(c, data); err != nil {
		return cid.Undef, err
	}
	return c, nil
}

// Encode encodes an in-memory manifest and returns its root CID and all its
// blocks, the root included. m.Entries' FirstChunk fields are ignored;
// m.Size must equal the sum of the entries' sizes. The rules are the
// Builder's. Encode only reads m.
func Encode(m *Manifest) (root cid.Cid, blocks map[cid.Cid][]byte, err error) {
	blocks = make(map[cid.Cid][]byte)
	b, err := NewBuilder(m.Name, m.Single, m.ChunkSize, m.Hash, func(c cid.Cid, data []byte) error {
		blocks[c] = data
		return nil
	})
	if err != nil {
		return cid.Undef, nil, err
	}
	for _, e := range m.Entries {
		if err := b.AddEntry(e); err != nil {
			return cid.Undef, nil, err
		}
	}
	b.SetSeal(m.Seal)
	if b.check.size != m.Size {
		return cid.Undef, nil, fmt.Errorf("%w: Size is %d but the entries hold %d bytes", ErrInvalid, m.Size, b.check.size)
	}
	if err := b.AddDigests(m.Digests); err != nil {
		return cid.Undef, nil, err
	}
	root, err = b.Finish()
	if err != nil {
		return cid.Undef, nil, err
	}
	return root, blocks, nil
}
