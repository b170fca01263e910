package transfer

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
)

func TestJSONRootsAreStrings(t *testing.T) {
	root, _ := cid.Decode("bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy")
	in := ShareInfo{ShareRecord: ShareRecord{Root: root, Name: "x", Size: 3, Added: time.Unix(5, 0).UTC()}, Stale: "changed"}
	data, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"root":"bafyrei`) || !strings.Contains(string(data), `"stale":"changed"`) {
		t.Fatalf("share info JSON: %s", data)
	}
	var out ShareInfo
	if err := json.Unmarshal(data, &out); err != nil || !out.Root.Equals(root) || out.Stale != "changed" || out.Name != "x" {
		t.Fatalf("round trip: %+v %v", out, err)
	}
	p, err := json.Marshal(Progress{Root: root, Bytes: 7})
	if err != nil || !strings.Contains(string(p), `"root":"bafyrei`) {
		t.Fatalf("progress JSON: %s %v", p, err)
	}
	var back Progress
	if err := json.Unmarshal(p, &back); err != nil || !back.Root.Equals(root) || back.Bytes != 7 {
		t.Fatalf("progress round trip: %+v %v", back, err)
	}
}
