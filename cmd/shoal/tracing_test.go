package main

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
)

func TestTracingFromEnv(t *testing.T) {
	ctx := context.Background()
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	for _, c := range []struct {
		name string
		env  []string
		on   bool
		err  string
	}{
		{"off by default", nil, false, ""},
		{"none", []string{"OTEL_TRACES_EXPORTER", "none"}, false, ""},
		{"disabled wins", []string{"OTEL_SDK_DISABLED", "true", "OTEL_TRACES_EXPORTER", "console"}, false, ""},
		{"console", []string{"OTEL_TRACES_EXPORTER", "console"}, true, ""},
		{"endpoint alone means otlp", []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1"}, true, ""},
		{"otlp and console", []string{"OTEL_TRACES_EXPORTER", "otlp, console", "OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1"}, true, ""},
		{"grpc refused", []string{"OTEL_TRACES_EXPORTER", "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"}, false, "OTLP over HTTP only"},
		{"unknown exporter", []string{"OTEL_TRACES_EXPORTER", "jaeger"}, false, `"jaeger": shoal knows otlp, console and none`},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			asked := false
			tp, shutdown, err := tracing(ctx, env(c.env...), &out, func() ([]attribute.KeyValue, error) {
				asked = true
				return []attribute.KeyValue{attribute.String("service.instance.id", "test")}, nil
			})
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one saying %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (tp != nil) != c.on {
				t.Fatalf("tracing on: %v, want %v", tp != nil, c.on)
			}
			if asked != c.on {
				t.Errorf("the node's attributes were asked for: %v, with tracing on: %v", asked, c.on)
			}
			if tp == nil {
				return
			}
			_, span := tp.Tracer("test").Start(ctx, "a span")
			span.End()
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			_ = shutdown(sctx) // the OTLP exporter's endpoint does not answer
			if strings.Contains(strings.Join(c.env, " "), "console") && !strings.Contains(out.String(), `"Name":"a span"`) {
				t.Fatalf("console exporter wrote:\n%s", out.String())
			}
		})
	}
}

// Two daemons with console tracing: a fetch through the CLI is one trace,
// and the serving daemon's spans carry its ID.
func TestTracingAcrossDaemons(t *testing.T) {
	env := []string{"OTEL_TRACES_EXPORTER=console", "OTEL_SERVICE_NAME=shoal-test"}
	homeA, homeB := t.TempDir(), t.TempDir()
	a, addrA, restA := startDaemonEnv(t, homeA, env)
	b, _, restB := startDaemonEnv(t, homeB, env, "--bootstrap", addrA)
	root := lastLine(mustShoal(t, homeA, "share", "--quiet", randomFile(t, 3<<20)))
	out := mustShoal(t, homeB, "fetch", root, "--peer", addrA, "-o", filepath.Join(t.TempDir(), "x"), "--explain")
	m := regexp.MustCompile(`trace: ([0-9a-f]{32})`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("--explain names no trace:\n%s", out)
	}
	tid := m[1]
	// Spans still batched are written when the daemons stop. Their
	// output is read to its end before Wait, which closes the pipe.
	var rest []string
	for _, d := range []struct {
		cmd  *exec.Cmd
		rest <-chan string
	}{{b, restB}, {a, restA}} {
		if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		rest = append(rest, <-d.rest)
		if err := d.cmd.Wait(); err != nil {
			t.Fatalf("daemon exit: %v", err)
		}
	}
	fetcher, seed := rest[0], rest[1]
	for _, want := range []string{`"Name":"shoal.fetch"`, `"Name":"shoal.find_providers"`, `"Name":"shoal.chunk"`, `"TraceID":"` + tid + `"`, `"shoal-test"`} {
		if !strings.Contains(fetcher, want) {
			t.Errorf("fetching daemon's spans lack %s:\n%s", want, fetcher)
		}
	}
	served := 0
	for line := range strings.Lines(seed) {
		if strings.Contains(line, `"Name":"shoal.serve_chunk"`) {
			served++
			if !strings.Contains(line, `"TraceID":"`+tid+`"`) {
				t.Errorf("a chunk served outside the fetch's trace: %.300s", line)
			}
		}
	}
	if served != 3 {
		t.Errorf("serving daemon recorded %d chunks served, want 3", served)
	}
}
