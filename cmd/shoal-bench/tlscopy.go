package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"time"
)

// tlsPair is a server and a client TLS 1.3 configuration that trust each
// other through a self-signed ECDSA P-256 certificate made in memory.
type tlsPair struct {
	server, client *tls.Config
}

func newTLSPair() (*tlsPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "shoal-bench"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	// TLS 1.3 only. Go does not let TLS 1.3 suites be configured: with AES
	// hardware on both sides it picks AES-GCM, as libp2p's TLS does.
	return &tlsPair{
		server: &tls.Config{
			Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}},
			MinVersion:   tls.VersionTLS13,
			MaxVersion:   tls.VersionTLS13,
		},
		client: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13, MaxVersion: tls.VersionTLS13},
	}, nil
}

// copyResult is one plain TLS copy.
type copyResult struct {
	Elapsed time.Duration
	Suite   string // negotiated cipher suite
	Bytes   int64
}

// tlsCopy serves the file src over TLS 1.3 on 127.0.0.1 (io.Copy from
// the file to the connection) and copies it from a client connection into
// a new file dst, which it fsyncs; or, when dst is "", into io.Discard.
// The time runs from the dial to the end of the fsync (or of the stream).
func tlsCopy(ctx context.Context, cfg *tlsPair, src, dst string) (copyResult, error) {
	var res copyResult
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg.server)
	if err != nil {
		return res, err
	}
	defer ln.Close()

	served := make(chan error, 1)
	go func() { served <- serveFile(ln, src) }()

	var out *os.File
	if dst != "" {
		if out, err = os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644); err != nil {
			ln.Close()
			<-served
			return res, err
		}
		defer out.Close()
	}

	d := tls.Dialer{Config: cfg.client}
	start := time.Now()
	c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		ln.Close()
		<-served
		return res, fmt.Errorf("dial: %w", err)
	}
	conn := c.(*tls.Conn)
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if out != nil {
		// Writes of 1 MiB, as a fetch writes its chunks, rather than one
		// per 16 KiB TLS record.
		bw := bufio.NewWriterSize(out, 1<<20)
		if res.Bytes, err = io.Copy(bw, conn); err == nil {
			if err = bw.Flush(); err == nil {
				err = out.Sync()
			}
		}
	} else {
		res.Bytes, err = io.Copy(io.Discard, conn)
	}
	res.Elapsed = time.Since(start)
	res.Suite = tls.CipherSuiteName(conn.ConnectionState().CipherSuite)
	if err != nil {
		conn.Close() // unblock the server
	}
	if serr := <-served; err == nil {
		err = serr
	}
	if err != nil {
		return res, ctxErr(ctx, err)
	}
	if out != nil {
		if err := out.Close(); err != nil {
			return res, err
		}
	}
	return res, nil
}

// serveFile accepts one connection on ln and writes the file at path to it.
func serveFile(ln net.Listener, path string) error {
	c, err := ln.Accept()
	if err != nil {
		return fmt.Errorf("accept: %w", err)
	}
	defer c.Close()
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.Copy(c, f); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	// Close sends close_notify: the client reads io.EOF, not a reset.
	if err := c.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("serve: close: %w", err)
	}
	return nil
}
