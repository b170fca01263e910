package node

import (
	"testing"

	"go.uber.org/goleak"
)

// libp2p's bandwidth meters share one sweeper goroutine per process,
// started on first use and never stopped.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/libp2p/go-flow-metrics.(*sweeper).run"))
}
