package main

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// Every benchmark closes its nodes, listeners and connections.
//
// The namespace testbed re-executes this program for its hidden HTTP
// subcommands; under test, that program is the test binary, which then
// runs the subcommand instead of the tests. libp2p's bandwidth meters
// share one sweeper goroutine per process, started on first use and
// never stopped.
func TestMain(m *testing.M) {
	if os.Getenv("SHOAL_BENCH_CHILD") == "1" {
		main()
		os.Exit(0)
	}
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/libp2p/go-flow-metrics.(*sweeper).run"))
}
