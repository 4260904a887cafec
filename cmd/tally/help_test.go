package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHelp runs every command and subcommand with each way of asking for
// help: each exits 0 and prints how to call it, its flags and an example.
func TestHelp(t *testing.T) {
	cases := []struct {
		args  []string
		flags []string // flags (or subcommands) the help must name
	}{
		{[]string{}, []string{"serve", "keys", "reports", "import"}},
		{[]string{"serve"}, []string{"-addr", "-data", "-config", "-admin-token"}},
		{[]string{"verify"}, []string{"-data", "-max-differences"}},
		{[]string{"keys"}, []string{"create", "list", "revoke", "--data", "--url"}},
		{[]string{"keys", "create"}, []string{"-scope", "-customer", "-subject", "-ttl", "-data", "-url", "-token"}},
		{[]string{"keys", "list"}, []string{"-data", "-url", "-token"}},
		{[]string{"keys", "revoke"}, []string{"-data", "-url", "-token"}},
		{[]string{"portal"}, []string{"rotate-key", "-data"}},
		{[]string{"portal", "rotate-key"}, []string{"-data"}},
		{[]string{"reports"}, []string{"-url", "-token", "TALLY_TOKEN", "-customer", "-state", "-id", "-json"}},
		{[]string{"import"}, []string{"-url", "-token", "-state", "-dry-run"}},
		{[]string{"loadgen"}, []string{"-url", "-events", "-batch", "-concurrency"}},
		{[]string{"version"}, nil},
		{[]string{"querybench"}, []string{"-meter", "-queries"}},
		{[]string{"nullserver"}, []string{"-addr"}},
	}
	for _, c := range cases {
		forms := [][]string{
			append(append([]string{}, c.args...), "-h"),
			append(append([]string{}, c.args...), "--help"),
			append([]string{"help"}, c.args...),
		}
		if len(c.args) == 1 && (c.args[0] == "keys" || c.args[0] == "portal") {
			forms = append(forms, append(append([]string{}, c.args...), "help"))
		}
		for _, args := range forms {
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				var stdout, stderr bytes.Buffer
				err := run(context.Background(), args, &stdout, &stderr)
				out := stdout.String() + stderr.String()
				if err != nil {
					t.Fatalf("tally %s: %v (exit %d), want exit 0\n%s", strings.Join(args, " "), err, exitCode(err), out)
				}
				want := append([]string{"Usage: tally", "Examples:\n  "}, c.flags...)
				for _, w := range want {
					if !strings.Contains(out, w) {
						t.Errorf("tally %s: help lacks %q:\n%s", strings.Join(args, " "), w, out)
					}
				}
				if strings.Contains(out, "unknown") {
					t.Errorf("tally %s answers as if help were unknown:\n%s", strings.Join(args, " "), out)
				}
			})
		}
	}
}

// TestUnknownSubcommandPointsToHelp: a mistyped subcommand is an error
// that says what the choices are.
func TestUnknownSubcommandPointsToHelp(t *testing.T) {
	for _, args := range [][]string{{"keys", "delete"}, {"portal", "rotate"}} {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), args, &stdout, &stderr)
		if err == nil || exitCode(err) == 0 {
			t.Fatalf("tally %s: %v, want an error", strings.Join(args, " "), err)
		}
		if !strings.Contains(err.Error(), "unknown subcommand") {
			t.Errorf("tally %s: %v, want it to name the unknown subcommand", strings.Join(args, " "), err)
		}
	}
}

// TestReportsWithoutCredential: against a server that needs a credential,
// tally reports without one says which flag or variable to set, and with a
// wrong one that it was refused.
func TestReportsWithoutCredential(t *testing.T) {
	t.Setenv("TALLY_TOKEN", "")
	t.Setenv("TALLY_ADMIN_TOKEN", "")
	t.Setenv("TALLY_URL", "")
	os.Unsetenv("TALLY_TOKEN")
	os.Unsetenv("TALLY_ADMIN_TOKEN")
	os.Unsetenv("TALLY_URL")
	const admin = "an-admin-token-long-enough-to-pass-muster"
	f := serveFlags{addr: "127.0.0.1:0", data: filepath.Join(t.TempDir(), "data"), adminToken: admin,
		shutdownTimeout: 5 * time.Second, readHeaderTimeout: 5 * time.Second, maxHeaderBytes: 1 << 16}
	addr, _ := inProcess(t, f)
	base := "http://" + addr

	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"reports", "--url", base}, &stdout, &stderr)
	if err == nil {
		t.Fatal("tally reports without a credential succeeded")
	}
	for _, w := range []string{"401", "--token", "TALLY_TOKEN"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("tally reports without a credential: %q lacks %q", err, w)
		}
	}

	err = run(context.Background(), []string{"reports", "--url", base, "--token", "wrong"}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "refused the credential of --token") {
		t.Errorf("tally reports with a wrong credential: %v, want it to say the credential was refused", err)
	}

	err = run(context.Background(), []string{"keys", "list", "--url", base}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "--token") || !strings.Contains(err.Error(), "TALLY_TOKEN") {
		t.Errorf("tally keys list --url without a credential: %v, want it to name --token and TALLY_TOKEN", err)
	}

	if err := run(context.Background(), []string{"reports", "--url", base, "--token", admin}, &stdout, &stderr); err != nil {
		t.Errorf("tally reports with the admin token: %v", err)
	}
}
