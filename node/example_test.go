package node_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/shoalnet/shoal/node"
)

// exampleNodes starts two nodes on loopback in homes under dir.
func exampleNodes(ctx context.Context, dir string) (a, b *node.Node) {
	start := func(name string) *node.Node {
		cfg := node.DefaultConfig()
		cfg.Home = filepath.Join(dir, name)
		cfg.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0"}
		n, err := node.New(ctx, cfg)
		if err != nil {
			log.Fatal(err)
		}
		return n
	}
	return start("a"), start("b")
}

// exampleShared starts two nodes in a new directory, a sharing a small
// file that b does not hold.
func exampleShared(ctx context.Context) (dir string, a, b *node.Node, root cid.Cid) {
	dir, err := os.MkdirTemp("", "shoal-example-")
	if err != nil {
		log.Fatal(err)
	}
	a, b = exampleNodes(ctx, dir)
	src := filepath.Join(dir, "hello.txt")
	if err := os.WriteFile(src, []byte("hello, shoal\n"), 0o644); err != nil {
		log.Fatal(err)
	}
	root, err = a.Share(ctx, src, node.ShareOptions{})
	if err != nil {
		log.Fatal(err)
	}
	return dir, a, b, root
}

// Share a file: it is served from where it lies, announced, and named by
// its root CID.
func ExampleNode_Share() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "shoal-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	a, b := exampleNodes(ctx, dir)
	defer a.Close()
	defer b.Close()

	src := filepath.Join(dir, "hello.txt")
	if err := os.WriteFile(src, []byte("hello, shoal\n"), 0o644); err != nil {
		log.Fatal(err)
	}
	// The root names the content, the name and the mode: the same file
	// shared anywhere has the same root.
	if err := os.Chmod(src, 0o644); err != nil {
		log.Fatal(err)
	}
	root, err := a.Share(ctx, src, node.ShareOptions{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(root)
	// Output: bafyr4iataukayy6sfk54akw2mn5ytohsgxw55fmjvespohlkjz5wqnnn7a
}

// Fetch a share from a peer that holds it: every byte is verified before
// it is written, and the copy is then served too.
func ExampleNode_Fetch() {
	ctx := context.Background()
	dir, a, b, root := exampleShared(ctx)
	defer os.RemoveAll(dir)
	defer a.Close()
	defer b.Close()

	res, err := b.Fetch(ctx, root, filepath.Join(dir, "copy.txt"), node.FetchOptions{
		Peers: []peer.AddrInfo{a.AddrInfo()}, // or found through the catalog and the DHT
	})
	if err != nil {
		log.Fatal(err)
	}
	data, err := os.ReadFile(res.Path)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: %q, %d chunk(s)\n", res.Manifest.Name, data, res.Progress.Chunks)
	// Output: hello.txt: "hello, shoal\n", 1 chunk(s)
}

// Open reads a share while it arrives; one not held here is fetched into
// the node's store.
func ExampleNode_Open() {
	ctx := context.Background()
	dir, a, b, root := exampleShared(ctx)
	defer os.RemoveAll(dir)
	defer a.Close()
	defer b.Close()
	if err := b.Connect(ctx, a.AddrInfo()); err != nil {
		log.Fatal(err)
	}
	if err := b.SyncCatalog(ctx, a.ID()); err != nil { // b learns that a holds root
		log.Fatal(err)
	}

	r, err := b.Open(ctx, root, "") // "" for a single-file share
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	if _, err := io.Copy(os.Stdout, r); err != nil {
		log.Fatal(err)
	}
	// Output: hello, shoal
}
