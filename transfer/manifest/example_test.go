package manifest_test

import (
	"context"
	"fmt"

	"github.com/fxamacker/cbor/v2"
	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
	"lukechampine.com/blake3"

	"github.com/shoalnet/shoal/transfer/manifest"
)

// A single-file share of five bytes: one entry, one chunk.
func ExampleEncode() {
	data := []byte("hello")
	sum := blake3.Sum256(data)
	m := &manifest.Manifest{
		Name:      "hello.txt",
		Single:    true,
		ChunkSize: manifest.DefaultChunkSize,
		Hash:      mh.BLAKE3,
		Size:      int64(len(data)),
		Entries:   []manifest.Entry{{Path: "hello.txt", Size: int64(len(data)), Mode: 0o644}},
		Digests:   sum[:],
	}
	root, blocks, err := manifest.Encode(m)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("root:", root)
	fmt.Println("blocks:", len(blocks))
	fmt.Println("chunk:", m.ChunkCID(0))
	fmt.Println("verify:", m.Verify(0, data))

	// The root block in CBOR diagnostic notation (links are tag 42).
	diag, err := cbor.Diagnose(blocks[root])
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(diag)

	// Load checks every block against its CID and the whole manifest.
	get := func(_ context.Context, c cid.Cid) ([]byte, error) { return blocks[c], nil }
	loaded, err := manifest.Load(context.Background(), root, get)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(loaded.Name, loaded.Size, loaded.NumChunks())
	// Output:
	// root: bafyr4ihdznw5zmfnas7haamfeurgt35djbjndvezlfybx635szhbw4ewje
	// blocks: 3
	// chunk: bafkr4ihkr4ld3m4gqkjf4reryxsy2s5tkbxprqkow6fin2iiyvreuzzab4
	// verify: <nil>
	// {"hash": 30, "name": "hello.txt", "size": 5, "shoal": 1, "chunks": 1, "single": true, "entries": 1, "chunkSize": 1048576, "chunkBlocks": [42(h'0001711e20de5948df722731497a975e0adc87dd928d0761a78a82cfb5917144ff3563db7a')], "entryBlocks": [42(h'0001711e2063fb0fa7cd139b66fc98b61168adffda15f4aec5e6ac5ab75fd5add5f29b7707')]}
	// hello.txt 5 1
}
