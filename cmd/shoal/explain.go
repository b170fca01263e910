package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/shoalnet/shoal/transfer"
)

// explain writes, in plain words, how a fetch went: how long finding
// providers and the manifest took, what each peer sent over which path,
// and what most likely limited the speed. p is the fetch's last progress;
// err, if not nil, how it failed.
func explain(w io.Writer, p transfer.Progress, err error) {
	fmt.Fprintln(w, "how the fetch went:")
	if p.Trace != "" {
		fmt.Fprintf(w, "  trace: %s (every chunk request and the serving peers' work on it)\n", p.Trace)
	}
	if p.FirstProvider > 0 {
		fmt.Fprintf(w, "  providers: the first one answered after %s", p.FirstProvider.Round(time.Millisecond))
		if p.Manifest > 0 {
			fmt.Fprintf(w, "; the manifest was here after %s", p.Manifest.Round(time.Millisecond))
		}
		fmt.Fprintln(w)
	} else {
		fmt.Fprintln(w, "  providers: none answered (the catalog and the DHT knew no holder that could be reached)")
	}
	secs := p.Elapsed.Seconds()
	if secs > 0 && p.Total > 0 {
		fmt.Fprintf(w, "  %s of %s in %s: %.1f MB/s received, %d chunk(s) resumed, %d duplicate(s)\n",
			size(p.Bytes), size(p.Total), p.Elapsed.Round(time.Millisecond), float64(p.Received)/secs/1e6, p.Resumed, p.Duplicates)
	}
	peers := slices.Clone(p.Peers)
	slices.SortFunc(peers, func(a, b transfer.PeerProgress) int { return int(b.Bytes - a.Bytes) })
	for _, pp := range peers {
		path := pp.Path
		if path == "" {
			path = "gone"
		}
		line := fmt.Sprintf("  peer %s  %-11s %9s  %4d chunk(s)  %.1f MB/s", shortID(pp.Peer.String()), path, size(pp.Bytes), pp.Chunks, pp.Rate/1e6)
		if pp.Error != "" {
			line += "  dropped: " + pp.Error
		}
		fmt.Fprintln(w, line)
	}
	fmt.Fprintln(w, "  what limited it: "+limit(p, err))
}

// limit names the most likely limit of a fetch, from its figures.
func limit(p transfer.Progress, err error) string {
	var served, relayed []transfer.PeerProgress
	for _, pp := range p.Peers {
		if pp.Chunks > 0 {
			served = append(served, pp)
			if pp.Path == "relayed" {
				relayed = append(relayed, pp)
			}
		}
	}
	switch {
	case err != nil && len(served) == 0:
		return "no provider served a chunk: " + err.Error()
	case err != nil:
		return "it failed: " + err.Error()
	case len(served) == 0 && p.Resumed == p.TotalChunks:
		return "nothing: every chunk was here already"
	case len(served) == 0:
		return "no provider served a chunk"
	case p.FirstProvider > p.Elapsed/2:
		return "finding a provider took most of the time (the catalog first, then the DHT); give --peer ADDR to skip the search"
	case len(served) == 1:
		return "one provider served everything, so the fetch went as fast as it could send: its upload, the path to it, its disk"
	case p.Chunks > 0 && p.Duplicates*20 > p.Chunks:
		return fmt.Sprintf("%d%% of the chunks came twice (the last chunks are asked of several peers at once)", p.Duplicates*100/p.Chunks)
	case len(relayed) > 0:
		return "relayed peers are held to the relay's limits; direct connections were not possible to " + ids(relayed)
	}
	fast, slow := served[0], served[0]
	for _, pp := range served {
		if pp.Rate > fast.Rate {
			fast = pp
		}
		if pp.Rate < slow.Rate {
			slow = pp
		}
	}
	if slow.Rate*4 < fast.Rate {
		return fmt.Sprintf("peer %s sent much slower than %s; the scheduler gave it fewer chunks", shortID(slow.Peer.String()), shortID(fast.Peer.String()))
	}
	return fmt.Sprintf("%d providers served in parallel at similar rates: their combined upload, or this node's download or disk", len(served))
}

func ids(peers []transfer.PeerProgress) string {
	var out []string
	for _, pp := range peers {
		out = append(out, shortID(pp.Peer.String()))
	}
	return strings.Join(out, ", ")
}
