package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestTwoNodes(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), 5<<20+3, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "verified") || !strings.Contains(out.String(), "shared data.bin as bafy") {
		t.Fatalf("unexpected output:\n%s", out.String())
	}
}
