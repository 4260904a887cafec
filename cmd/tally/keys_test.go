package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestKeysCommand makes a first admin key offline, as an operator does
// before exposing tally, and checks that the server then needs it.
func TestKeysCommand(t *testing.T) {
	data := t.TempDir()
	var out, errOut bytes.Buffer
	if err := run(t.Context(), []string{"keys", "create", "--data", data, "--scope", "admin", "--name", "ops"}, &out, &errOut); err != nil {
		t.Fatalf("keys create: %v\n%s", err, errOut.String())
	}
	key := regexp.MustCompile(`(?m)^key:\s+(tly_\S+)$`).FindStringSubmatch(out.String())
	id := regexp.MustCompile(`(?m)^id:\s+(key_\S+)$`).FindStringSubmatch(out.String())
	if key == nil || id == nil {
		t.Fatalf("keys create printed no key and id:\n%s", out.String())
	}
	for _, args := range [][]string{
		{"keys", "create", "--data", data, "--scope", "admin", "--customer", "nobody"},
		{"keys", "create", "--data", data, "--scope", "read", "--customer", "nobody"},
		{"keys", "create", "--data", data, "--scope", "root"},
		{"keys", "revoke", "--data", data, "key_nothing"},
		{"keys", "create", "--data", data, "--scope", "read", "--subject", "a\nb"},
	} {
		if err := run(t.Context(), args, io.Discard, io.Discard); err == nil {
			t.Errorf("%v succeeded", args)
		}
	}
	out.Reset()
	if err := run(t.Context(), []string{"keys", "create", "--data", data, "--scope", "read", "--subject", "a\x00"}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "--subject: \"a\\x00\" holds the control character U+0000") {
		t.Errorf("keys create --subject a\\x00: %v, want an error naming the control character", err)
	}
	if err := run(t.Context(), []string{"keys", "list", "--data", data}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), id[1]) || strings.Contains(out.String(), key[1]) || !strings.Contains(out.String(), "active") {
		t.Errorf("keys list must show the key's id and status, never the key:\n%s", out.String())
	}

	srv := startTally(t, data, serveOpts{})
	if strings.Contains(srv.Log(), "NO CREDENTIAL CONFIGURED") {
		t.Errorf("a server with an admin key warns it is open")
	}
	get := func(cred string) int {
		req, _ := http.NewRequest("GET", srv.URL+"/api/v1/keys", nil)
		if cred != "" {
			req.Header.Set("Authorization", "Bearer "+cred)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := get(""); got != http.StatusUnauthorized {
		t.Errorf("without a credential: %d, want 401", got)
	}
	if got := get(key[1]); got != http.StatusOK {
		t.Errorf("with the admin key: %d, want 200", got)
	}
	if strings.Contains(srv.Log(), key[1]) {
		t.Errorf("the server log shows the key")
	}
	if err := run(t.Context(), []string{"keys", "list", "--data", data}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "API") {
		t.Errorf("keys list on a running server's directory: %v; want an error pointing to the API", err)
	}

	// Against the running server, through its API.
	remote := []string{"--url", srv.URL, "--token", key[1]}
	out.Reset()
	if err := run(t.Context(), append([]string{"keys", "create", "--scope", "read", "--ttl", "1h"}, remote...), &out, io.Discard); err != nil {
		t.Fatalf("keys create --url: %v", err)
	}
	rkey := regexp.MustCompile(`(?m)^key:\s+(tly_\S+)$`).FindStringSubmatch(out.String())
	rid := regexp.MustCompile(`(?m)^id:\s+(key_\S+)$`).FindStringSubmatch(out.String())
	if rkey == nil || rid == nil || !strings.Contains(out.String(), "expires:") {
		t.Fatalf("keys create --url printed:\n%s", out.String())
	}
	if err := run(t.Context(), append(append([]string{"keys", "revoke"}, remote...), rid[1]), io.Discard, io.Discard); err != nil {
		t.Fatalf("keys revoke --url: %v", err)
	}
	out.Reset()
	if err := run(t.Context(), append([]string{"keys", "list"}, remote...), &out, io.Discard); err != nil {
		t.Fatalf("keys list --url: %v", err)
	}
	if !regexp.MustCompile(rid[1] + `.*revoked`).MatchString(out.String()) {
		t.Errorf("keys list --url does not show %s revoked:\n%s", rid[1], out.String())
	}
	// Every page is read: one key a page here.
	keysPageLimit = 1
	t.Cleanup(func() { keysPageLimit = 1000 })
	out.Reset()
	if err := run(t.Context(), append([]string{"keys", "list"}, remote...), &out, io.Discard); err != nil {
		t.Fatalf("keys list --url by pages of 1: %v", err)
	}
	if !strings.Contains(out.String(), id[1]) || !regexp.MustCompile(rid[1]+`.*revoked`).MatchString(out.String()) {
		t.Errorf("keys list --url by pages of 1 lacks a key:\n%s", out.String())
	}
	if err := run(t.Context(), []string{"keys", "list", "--url", srv.URL, "--token", "wrong"}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("keys list with a wrong token: %v, want a 401 error", err)
	}
}

func TestServeRefusesOpenNonLoopback(t *testing.T) {
	var errOut bytes.Buffer
	err := run(t.Context(), []string{"serve", "--addr", "0.0.0.0:0", "--data", t.TempDir()}, io.Discard, &errOut)
	if err == nil || !strings.Contains(err.Error(), "--insecure-no-auth") {
		t.Fatalf("serve on 0.0.0.0 without credentials: %v; want a refusal naming --insecure-no-auth", err)
	}
	for addr, want := range map[string]bool{"127.0.0.1:8080": true, "localhost:1": true, "[::1]:80": true, ":8080": false, "0.0.0.0:80": false, "10.0.0.1:80": false} {
		if got := isLoopback(addr); got != want {
			t.Errorf("isLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	pool := writeSelfSigned(t, certFile, keyFile)
	f := serveFlags{addr: "127.0.0.1:0", data: filepath.Join(dir, "data"), adminToken: "t0ken", tlsCert: certFile, tlsKey: keyFile,
		shutdownTimeout: 5 * time.Second, readHeaderTimeout: 5 * time.Second, maxHeaderBytes: 1 << 16}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- serve(ctx, f, fileConfig{}, slog.New(slog.NewTextHandler(io.Discard, nil)), ready) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.Get("https://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("https: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("healthz over https: %d", resp.StatusCode)
	}
	if _, err := os.Stat(filepath.Join(f.data, "portal-signing-keys.json")); err != nil {
		t.Errorf("the portal signing key was not generated into the data directory: %v", err)
	}
}

func writeSelfSigned(t *testing.T, certFile, keyFile string) *x509.CertPool {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tally test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}

func TestAuthConfig(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, wantErr string
	}{
		{"oidc", "auth:\n  oidc:\n    issuer: https://id.example\n    audience: tally\n    customerClaim: org\n", ""},
		{"oidc without audience", "auth:\n  oidc:\n    issuer: https://id.example\n", "audience: required"},
		{"oidc as tally", "auth:\n  oidc:\n    issuer: tally\n    audience: x\n", "issuer of tally's own portal tokens"},
		{"short portal key", "auth:\n  portal:\n    signingKeys: [c2hvcnQ=]\n", "need at least 32"},
		{"portal key not base64", "auth:\n  portal:\n    signingKeys: ['***']\n", "not base64"},
		{"unknown key", "auth:\n  oidc:\n    issuer: https://id.example\n    audience: tally\n    audiences: [x]\n", "audiences"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tally.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := loadFileConfig(path)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("loadFileConfig: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("loadFileConfig: %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}
