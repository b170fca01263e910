package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/shoalnet/shoal/node"
)

// tracingHelp is what `shoal daemon --help` says of tracing.
const tracingHelp = "Tracing (OpenTelemetry) is off unless the standard variables turn it on:\n" +
	"OTEL_TRACES_EXPORTER=otlp (OTLP over HTTP; OTEL_EXPORTER_OTLP_ENDPOINT, default\n" +
	"http://localhost:4318, and the other OTEL_EXPORTER_OTLP_* variables apply) or\n" +
	"console (spans as JSON on stdout); setting OTEL_EXPORTER_OTLP_ENDPOINT alone\n" +
	"means otlp. OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER\n" +
	"and OTEL_BSP_* apply too; OTEL_SDK_DISABLED=true turns it off. A fetch is one\n" +
	"trace across the peers that serve it."

// tracing makes the tracer provider the OTEL_* variables ask for (getenv
// reads them), or nil when tracing is off; attrs, asked only when it is
// on, describe this node. shutdown flushes and stops it.
// Unlike the specification's default (otlp), no exporter is set up unless
// asked for: a daemon does not send spans to localhost:4318 unbidden.
func tracing(ctx context.Context, getenv func(string) string, stdout io.Writer, attrs func() ([]attribute.KeyValue, error)) (tp trace.TracerProvider, shutdown func(context.Context) error, err error) {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return nil, nil, nil
	}
	names := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER"))
	if names == "" && (getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "") {
		names = "otlp"
	}
	var opts []sdktrace.TracerProviderOption
	for name := range strings.SplitSeq(names, ",") {
		switch name = strings.TrimSpace(name); name {
		case "", "none":
		case "otlp":
			proto := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
			if proto == "" {
				proto = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
			}
			if proto != "" && proto != "http/protobuf" {
				return nil, nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL %q: shoal exports OTLP over HTTP only (http/protobuf); point it at the collector's HTTP port (4318)", proto)
			}
			exp, err := otlptracehttp.New(ctx)
			if err != nil {
				return nil, nil, fmt.Errorf("OTLP trace exporter: %w", err)
			}
			opts = append(opts, sdktrace.WithBatcher(exp))
		case "console":
			exp, err := stdouttrace.New(stdouttrace.WithWriter(stdout))
			if err != nil {
				return nil, nil, err
			}
			opts = append(opts, sdktrace.WithBatcher(exp))
		default:
			return nil, nil, fmt.Errorf("OTEL_TRACES_EXPORTER %q: shoal knows otlp, console and none", name)
		}
	}
	if len(opts) == 0 {
		return nil, nil, nil
	}
	own, err := attrs()
	if err != nil {
		return nil, nil, err
	}
	// The variables (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES) win
	// over shoal's own attributes.
	res, err := resource.New(ctx,
		resource.WithAttributes(append([]attribute.KeyValue{attribute.String("service.name", "shoal")}, own...)...),
		resource.WithFromEnv(), resource.WithTelemetrySDK(), resource.WithHost())
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, nil, fmt.Errorf("tracing resource: %w", err)
	}
	p := sdktrace.NewTracerProvider(append(opts, sdktrace.WithResource(res))...)
	// Callers of the API may send their own trace context (traceparent).
	otel.SetTextMapPropagator(propagation.TraceContext{})
	return p, p.Shutdown, nil
}

// setTracing sets cfg's tracer provider from the process's environment
// for the node on home (its peer ID names the service instance); the
// function returned flushes the spans left, after the node is closed, and
// says on errOut if that fails. Console spans go to console.
func setTracing(ctx context.Context, cfg *node.Config, home string, console, errOut io.Writer) (flush func(), err error) {
	flush = func() {}
	tp, shutdown, err := tracing(ctx, os.Getenv, console, func() ([]attribute.KeyValue, error) {
		key, _, err := node.LoadOrCreateIdentity(home)
		if err != nil {
			return nil, err
		}
		id, err := peer.IDFromPrivateKey(key)
		if err != nil {
			return nil, err
		}
		return []attribute.KeyValue{attribute.String("service.instance.id", id.String()), attribute.String("service.version", version)}, nil
	})
	if err != nil || tp == nil {
		return flush, err
	}
	cfg.TracerProvider = tp
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := shutdown(ctx); err != nil {
			fmt.Fprintf(errOut, "shoal: tracing: the last spans were not exported: %v\n", err)
		}
	}, nil
}
