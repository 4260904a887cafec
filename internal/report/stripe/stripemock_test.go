package stripe_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// stripeMockInstall tells a developer how to get stripe-mock when the
// tests cannot build or find it.
const stripeMockInstall = "stripe-mock is pinned in go.mod as a tool (go tool stripe-mock); " +
	"make sure `go build github.com/stripe/stripe-mock` works (go mod download), " +
	"or install it with `go install github.com/stripe/stripe-mock@v0.203.0` into $(go env GOPATH)/bin or PATH"

var (
	mockOnce sync.Once
	mockURL  string
	mockErr  error
	mockStop func()
	mockDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if mockStop != nil {
		mockStop()
	}
	if mockDir != "" {
		os.RemoveAll(mockDir)
	}
	os.Exit(code)
}

// stripeMock returns the base URL of a stripe-mock server the tests
// started on a free loopback port, failing the test when it cannot run.
func stripeMock(t *testing.T) string {
	t.Helper()
	mockOnce.Do(func() { mockURL, mockErr = startStripeMock() })
	if mockErr != nil {
		t.Fatalf("stripe-mock: %v\n%s", mockErr, stripeMockInstall)
	}
	return mockURL
}

// stripeMockBinary builds the version pinned in go.mod, or falls back to
// one on PATH or in GOPATH/bin.
func stripeMockBinary() (string, error) {
	var errs []error
	dir, err := os.MkdirTemp("", "tally-stripe-mock-")
	if err != nil {
		return "", err
	}
	mockDir = dir
	bin := filepath.Join(dir, "stripe-mock")
	if goBin, err := exec.LookPath("go"); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, goBin, "build", "-o", bin, "github.com/stripe/stripe-mock").CombinedOutput()
		if err == nil {
			return bin, nil
		}
		errs = append(errs, fmt.Errorf("go build github.com/stripe/stripe-mock: %v: %s", err, strings.TrimSpace(string(out))))
		if p, err := exec.Command(goBin, "env", "GOPATH").Output(); err == nil {
			for _, gp := range filepath.SplitList(strings.TrimSpace(string(p))) {
				cand := filepath.Join(gp, "bin", "stripe-mock")
				if _, err := os.Stat(cand); err == nil {
					return cand, nil
				}
			}
		}
	} else {
		errs = append(errs, fmt.Errorf("no go command on PATH: %w", err))
	}
	if p, err := exec.LookPath("stripe-mock"); err == nil {
		return p, nil
	}
	errs = append(errs, errors.New("no stripe-mock on PATH or in GOPATH/bin"))
	return "", errors.Join(errs...)
}

func startStripeMock() (string, error) {
	bin, err := stripeMockBinary()
	if err != nil {
		return "", err
	}
	// Port 0 on loopback for both listeners: the system picks free ports
	// and stripe-mock prints them.
	cmd := exec.Command(bin, "-http-addr", "127.0.0.1:0", "-https-addr", "127.0.0.1:0")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("start %s: %w", bin, err)
	}
	mockStop = func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		const prefix = "Listening for HTTP at address: "
		var seen []string
		for sc.Scan() {
			if addr, ok := strings.CutPrefix(sc.Text(), prefix); ok {
				found <- strings.TrimSpace(addr)
				_, _ = io.Copy(io.Discard, out)
				return
			}
			seen = append(seen, sc.Text())
		}
		found <- "exited: " + strings.Join(seen, "; ")
	}()
	select {
	case addr := <-found:
		if strings.HasPrefix(addr, "exited: ") {
			return "", fmt.Errorf("stripe-mock %s", addr)
		}
		return "http://" + addr, nil
	case <-time.After(30 * time.Second):
		return "", errors.New("stripe-mock did not report its HTTP address within 30 s")
	}
}
