package main

import (
	"testing"

	"go.uber.org/goleak"
)

// Every benchmark closes its nodes, listeners and connections.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
