package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tally-metering/tally/internal/auth"
	"github.com/tally-metering/tally/internal/billing"
	"github.com/tally-metering/tally/internal/bounds"
	"github.com/tally-metering/tally/internal/store"
	"github.com/tally-metering/tally/internal/store/sqlite"
)

// runKeys manages API keys: in a data directory directly, while tally is
// not running there (the server holds the directory's lock) — how a first
// admin key is made before tally is exposed — or, with --url, through a
// running server's API (/api/v1/keys) with an admin credential.
func runKeys(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || isHelp(args[0]) {
		printHelp(stderr, nil, keysHelp)
		if len(args) == 0 {
			return errUsage
		}
		return flag.ErrHelp
	}
	switch args[0] {
	case "create":
		return keysCreate(ctx, args[1:], stdout, stderr)
	case "list":
		return keysList(ctx, args[1:], stdout, stderr)
	case "revoke":
		return keysRevoke(ctx, args[1:], stdout, stderr)
	}
	return fmt.Errorf("keys: unknown subcommand %q (create, list or revoke; tally keys --help explains them)", args[0])
}

var keysHelp = helpText{
	usage: "tally keys create|list|revoke [--data DIR | --url URL --token ADMIN] [flags]",
	about: `Manages API keys. With --data it works on a data directory tally is not
running on (how the first admin key is made); with --url it asks a running
server's API (/api/v1/keys) with an admin credential.

Subcommands:
  create   make a key (shown once): --scope admin|ingest|read|metrics
  list     list the keys, their scope, binding, status and last use
  revoke   revoke a key by its id, at once

Run 'tally keys <subcommand> -h' for its flags.`,
	examples: []string{
		"tally keys create --data ./tally-data --scope admin --name ops",
		"tally keys list --url https://tally.example.com --token $ADMIN",
		"tally keys revoke --data ./tally-data key_0123456789abcdef",
	},
}

// keysTarget is where the keys commands work: a data directory, or a
// running server when url is set.
type keysTarget struct {
	data, url, token string
}

func keysFlags(name string, stderr io.Writer, h helpText) (*flag.FlagSet, *keysTarget) {
	fs := flag.NewFlagSet("keys "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	setHelp(fs, h)
	var kt keysTarget
	fs.StringVar(&kt.data, "data", "./tally-data", "data directory (env TALLY_DATA); tally must not be running on it")
	fs.StringVar(&kt.url, "url", "", "a running server's base URL, e.g. https://tally.example.com (env TALLY_URL); then the API is used instead of --data")
	fs.StringVar(&kt.token, "token", "", "an admin credential for --url (env TALLY_TOKEN)")
	return fs, &kt
}

// api calls the server's API with the admin credential and decodes a
// successful answer into out.
func (kt *keysTarget) api(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(kt.url, "/")+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if kt.token != "" {
		req.Header.Set("Authorization", "Bearer "+kt.token)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var p struct {
			Detail string   `json:"detail"`
			Errors []string `json:"errors"`
		}
		err := fmt.Errorf("%s %s: %s", method, path, resp.Status)
		if json.Unmarshal(b, &p) == nil && p.Detail != "" {
			err = fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, p.Detail)
		}
		if resp.StatusCode == http.StatusUnauthorized {
			err = fmt.Errorf("%w\n%s", err, credentialHint(kt.token, "an admin token or admin API key"))
		}
		return err
	}
	return json.Unmarshal(b, out)
}

func parseKeysFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	return applyEnv(fs)
}

// openKeysStore opens the data directory, explaining the lock.
func openKeysStore(ctx context.Context, dir string) (*sqlite.DB, error) {
	st, err := sqlite.Open(ctx, dir, sqlite.Options{})
	if errors.Is(err, sqlite.ErrLocked) {
		return nil, fmt.Errorf("%w: tally is running on %s; manage keys through its API instead (POST /api/v1/keys)", err, dir)
	}
	return st, err
}

// cliActor names the command line in the audit trail.
func cliActor() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return "cli:" + u.Username
	}
	return "cli"
}

func keysCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, kt := keysFlags("create", stderr, helpText{
		usage: "tally keys create --scope SCOPE [--customer KEY [--subject S]] [--name NOTE] [--ttl D] [--data DIR | --url URL --token ADMIN]",
		about: "Makes an API key and prints it once; only its SHA-256 hash is stored.",
		examples: []string{
			"tally keys create --data ./tally-data --scope admin --name ops",
			"tally keys create --url http://127.0.0.1:8080 --token $ADMIN --scope ingest --customer contoso --subject contoso-eu-1",
			"tally keys create --data ./tally-data --scope metrics --name prometheus --ttl 2160h",
		},
	})
	scope := fs.String("scope", "", "admin, ingest, read or metrics (required; metrics reads /metrics only, for a Prometheus scraper)")
	customer := fs.String("customer", "", "bind the key to this customer (key or id)")
	subject := fs.String("subject", "", "bind the key to this subject (deployment) of its customer")
	name := fs.String("name", "", "a note for people")
	ttl := fs.Duration("ttl", 0, "expire the key after this long, e.g. 2160h (default never)")
	if err := parseKeysFlags(fs, args); err != nil {
		return err
	}
	sc, err := auth.ParseScope(*scope)
	if err != nil {
		return fmt.Errorf("keys create: --scope: %w", err)
	}
	if (sc == auth.ScopeAdmin || sc == auth.ScopeMetrics) && (*customer != "" || *subject != "") {
		return errors.New("keys create: an admin or metrics key can't be bound to a customer or subject")
	}
	if *ttl < 0 {
		return errors.New("keys create: --ttl must not be negative")
	}
	if *subject != "" {
		if err := bounds.CheckSubject(*subject); err != nil {
			return fmt.Errorf("keys create: --subject: %w", err)
		}
	}
	if kt.url != "" {
		in := map[string]any{"scope": sc, "customer": *customer, "subject": *subject, "name": *name}
		if *ttl > 0 {
			in["expiresAt"] = time.Now().Add(*ttl).UTC().Format(time.RFC3339)
		}
		var k struct {
			store.APIKey
			Key         string `json:"key"`
			CustomerKey string `json:"customerKey"`
		}
		if err := kt.api(ctx, http.MethodPost, "/api/v1/keys", in, &k); err != nil {
			return fmt.Errorf("keys create: %w", err)
		}
		printKey(stdout, stderr, k.APIKey, k.CustomerKey, k.Key)
		return nil
	}
	st, err := openKeysStore(ctx, kt.data)
	if err != nil {
		return err
	}
	defer st.Close()
	c, err := resolveBinding(ctx, st, *customer, *subject)
	if err != nil {
		return fmt.Errorf("keys create: %w", err)
	}
	secret, hash, err := auth.NewAPIKey()
	if err != nil {
		return err
	}
	var b [10]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	now := time.Now().UTC()
	k := store.APIKey{
		ID:   "key_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:])),
		Name: *name, Prefix: auth.KeyDisplayPrefix(secret), Hash: hash, Scope: string(sc),
		CustomerID: c.ID, Subject: *subject, CreatedBy: cliActor(), CreatedAt: now,
	}
	if *ttl > 0 {
		exp := now.Add(*ttl)
		k.ExpiresAt = &exp
	}
	if err := st.CreateAPIKey(ctx, k); err != nil {
		return fmt.Errorf("keys create: %w", err)
	}
	if _, err := st.AppendAudit(ctx, store.AuditEntry{At: now, Actor: k.CreatedBy, Method: "CLI", Route: "tally keys create",
		Path: "tally keys create", Target: k.ID, Status: 201}); err != nil {
		return fmt.Errorf("keys create: %w", err)
	}
	printKey(stdout, stderr, k, c.Key, secret)
	return nil
}

// printKey shows a new key, its secret this once.
func printKey(stdout, stderr io.Writer, k store.APIKey, customerKey, secret string) {
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "id:\t%s\nscope:\t%s\n", k.ID, k.Scope)
	if k.CustomerID != "" {
		fmt.Fprintf(tw, "customer:\t%s (%s)\n", customerKey, k.CustomerID)
	}
	if k.Subject != "" {
		fmt.Fprintf(tw, "subject:\t%s\n", k.Subject)
	}
	if k.ExpiresAt != nil {
		fmt.Fprintf(tw, "expires:\t%s\n", k.ExpiresAt.Format(time.RFC3339))
	}
	fmt.Fprintf(tw, "key:\t%s\n", secret)
	tw.Flush()
	fmt.Fprintln(stderr, "The key is shown this once; tally keeps only its hash. Send it as Authorization: Bearer <key>.")
}

// resolveBinding finds the customer a key is bound to (none when both
// are empty), as POST /api/v1/keys does.
func resolveBinding(ctx context.Context, st store.Customers, customer, subject string) (billing.Customer, error) {
	switch {
	case customer == "" && subject == "":
		return billing.Customer{}, nil
	case customer == "":
		c, err := st.CustomerBySubject(ctx, subject)
		if errors.Is(err, store.ErrNotFound) {
			return c, fmt.Errorf("--subject: %q belongs to no customer", subject)
		}
		return c, err
	}
	c, err := st.GetCustomer(ctx, customer)
	if errors.Is(err, store.ErrNotFound) {
		return c, fmt.Errorf("--customer: there is no customer %q", customer)
	}
	if err != nil {
		return c, err
	}
	if c.DeletedAt != nil {
		return c, fmt.Errorf("--customer: %q is deleted", customer)
	}
	if subject != "" && !slices.Contains(c.Subjects, subject) {
		return c, fmt.Errorf("--subject: %q is not one of customer %q's subjects", subject, c.Key)
	}
	return c, nil
}

// keysPageLimit is how many keys keys list asks the API for at a time (a
// variable so that a test pages with a few keys).
var keysPageLimit = 1000

func keysList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, kt := keysFlags("list", stderr, helpText{
		usage:    "tally keys list [--data DIR | --url URL --token ADMIN]",
		about:    "Lists the API keys (never their secrets): id, prefix, scope, binding, status, creation and last use.",
		examples: []string{"tally keys list --data ./tally-data", "tally keys list --url http://127.0.0.1:8080 --token $ADMIN"},
	})
	if err := parseKeysFlags(fs, args); err != nil {
		return err
	}
	var ks []store.APIKey
	if kt.url != "" {
		// Every page: the list is paged (see docs/api.md, Pagination).
		for after := ""; ; {
			var page struct {
				Items     []store.APIKey
				NextAfter string
			}
			path := "/api/v1/keys?limit=" + strconv.Itoa(keysPageLimit)
			if after != "" {
				path += "&after=" + url.QueryEscape(after)
			}
			if err := kt.api(ctx, http.MethodGet, path, nil, &page); err != nil {
				return fmt.Errorf("keys list: %w", err)
			}
			ks = append(ks, page.Items...)
			if after = page.NextAfter; after == "" {
				break
			}
		}
	} else {
		st, err := openKeysStore(ctx, kt.data)
		if err != nil {
			return err
		}
		defer st.Close()
		if ks, err = st.ListAPIKeys(ctx); err != nil {
			return err
		}
	}
	now := time.Now()
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPREFIX\tSCOPE\tCUSTOMER\tSUBJECT\tSTATUS\tCREATED\tLAST USED\tNAME")
	for _, k := range ks {
		status := "active"
		switch {
		case k.RevokedAt != nil:
			status = "revoked"
		case k.ExpiresAt != nil && !k.ExpiresAt.After(now):
			status = "expired"
		}
		used := "-"
		if k.LastUsedAt != nil {
			used = k.LastUsedAt.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s…\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Prefix, k.Scope, dash(k.CustomerID), dash(k.Subject),
			status, k.CreatedAt.Format(time.RFC3339), used, k.Name)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func keysRevoke(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, kt := keysFlags("revoke", stderr, helpText{
		usage:    "tally keys revoke [--data DIR | --url URL --token ADMIN] KEY-ID",
		about:    "Revokes a key at once; it keeps its row (and audit history) but authenticates nothing.",
		examples: []string{"tally keys revoke --data ./tally-data key_0123456789abcdef", "tally keys revoke --url http://127.0.0.1:8080 --token $ADMIN key_0123456789abcdef"},
	})
	if err := parseKeysFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("keys revoke: name one key id (tally keys revoke --data DIR key_…)")
	}
	if kt.url != "" {
		var k store.APIKey
		if err := kt.api(ctx, http.MethodDelete, "/api/v1/keys/"+url.PathEscape(fs.Arg(0)), nil, &k); err != nil {
			return fmt.Errorf("keys revoke: %w", err)
		}
		fmt.Fprintf(stdout, "revoked %s at %s\n", k.ID, k.RevokedAt.Format(time.RFC3339))
		return nil
	}
	st, err := openKeysStore(ctx, kt.data)
	if err != nil {
		return err
	}
	defer st.Close()
	now := time.Now().UTC()
	k, err := st.RevokeAPIKey(ctx, fs.Arg(0), now)
	if err != nil {
		return fmt.Errorf("keys revoke: %w", err)
	}
	if _, err := st.AppendAudit(ctx, store.AuditEntry{At: now, Actor: cliActor(), Method: "CLI", Route: "tally keys revoke",
		Path: "tally keys revoke", Target: k.ID, Status: 200}); err != nil {
		return fmt.Errorf("keys revoke: %w", err)
	}
	fmt.Fprintf(stdout, "revoked %s at %s\n", k.ID, k.RevokedAt.Format(time.RFC3339))
	return nil
}

// runPortal manages the portal token signing keys of a data directory.
func runPortal(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("portal rotate-key", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "./tally-data", "data directory (env TALLY_DATA)")
	h := helpText{
		usage: "tally portal rotate-key [--data DIR]",
		about: `Subcommands:
  rotate-key   make a new portal token signing key in the data directory;
               tokens signed with the previous key stay valid until they
               expire, and a running tally picks the change up within seconds`,
		examples: []string{"tally portal rotate-key --data ./tally-data"},
	}
	setHelp(fs, h)
	if len(args) == 0 || args[0] != "rotate-key" {
		fs.Usage()
		switch {
		case len(args) > 0 && isHelp(args[0]):
			return flag.ErrHelp
		case len(args) > 0:
			return fmt.Errorf("portal: unknown subcommand %q (rotate-key)", args[0])
		}
		return errUsage
	}
	if err := parseKeysFlags(fs, args[1:]); err != nil {
		return err
	}
	path := filepath.Join(*data, auth.PortalKeyFile)
	if err := auth.RotatePortalKey(path); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "rotated the portal signing key in %s: new tokens are signed with the new key; tokens signed with the previous one stay valid until they expire (at most %s). A running tally picks the change up within seconds.\n", path, auth.MaxPortalTTL)
	return nil
}
