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
// runs the subcommand instead of the tests.
func TestMain(m *testing.M) {
	if os.Getenv("SHOAL_BENCH_CHILD") == "1" {
		main()
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}
