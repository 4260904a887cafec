package auth

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tally-metering/tally/internal/store"
)

// fakeKeys is an in-memory KeyStore that counts writes.
type fakeKeys struct {
	mu      sync.Mutex
	byHash  map[string]store.APIKey
	touches int
}

func (f *fakeKeys) APIKeyByHash(_ context.Context, hash string) (store.APIKey, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k, ok := f.byHash[hash]
	if !ok {
		return k, store.ErrNotFound
	}
	return k, nil
}

func (f *fakeKeys) TouchAPIKey(_ context.Context, id string, at time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.touches++
	return nil
}

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func TestAPIKeys(t *testing.T) {
	key, hash, err := NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	if !ParseAPIKey(key) || len(key) != keyLen || HashAPIKey(key) != hash || strings.Contains(hash, key) {
		t.Fatalf("NewAPIKey = %q, %q", key, hash)
	}
	other, _, _ := NewAPIKey()
	if other == key {
		t.Fatal("two keys are the same")
	}
	exp, rev := t0.Add(time.Hour), t0.Add(-time.Minute)
	fk := &fakeKeys{byHash: map[string]store.APIKey{}}
	add := func(k store.APIKey) string {
		s, h, err := NewAPIKey()
		if err != nil {
			t.Fatal(err)
		}
		k.Hash = h
		fk.byHash[h] = k
		return s
	}
	now := t0
	ks := &Keys{Store: fk, Now: func() time.Time { return now }}
	good := add(store.APIKey{ID: "key_good", Scope: "ingest", CustomerID: "c-1", Subject: "s-1", ExpiresAt: &exp})
	revoked := add(store.APIKey{ID: "key_rev", Scope: "admin", RevokedAt: &rev})
	p, err := ks.Verify(t.Context(), good)
	if err != nil || p.ID != "key_good" || p.Kind != KindKey || p.Admin || !p.Can(ScopeIngest) || p.Can(ScopeRead) || p.CustomerID != "c-1" || p.Subject != "s-1" {
		t.Fatalf("Verify(good) = %+v, %v", p, err)
	}
	for name, k := range map[string]string{"revoked": revoked, "unknown": other, "malformed": "tly_abc", "not a key": "hello"} {
		if _, err := ks.Verify(t.Context(), k); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("Verify(%s) = %v, want ErrUnauthenticated", name, err)
		}
	}
	// Uses within a minute of the first write nothing more.
	if fk.touches != 1 {
		t.Errorf("first use wrote the last-used time %d times, want 1", fk.touches)
	}
	for range 5 {
		now = now.Add(10 * time.Second)
		if _, err := ks.Verify(t.Context(), good); err != nil {
			t.Fatal(err)
		}
	}
	if fk.touches != 1 {
		t.Errorf("5 uses in 50 s wrote the last-used time %d times, want 1", fk.touches)
	}
	now = now.Add(TouchInterval)
	_, _ = ks.Verify(t.Context(), good)
	if fk.touches != 2 {
		t.Errorf("a use a minute later: %d writes, want 2", fk.touches)
	}
	now = exp
	if _, err := ks.Verify(t.Context(), good); !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("Verify at expiry = %v, want ErrUnauthenticated saying it expired", err)
	}
}

func TestPortalTokens(t *testing.T) {
	path := filepath.Join(t.TempDir(), PortalKeyFile)
	pk, err := LoadPortalKeys(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v; want mode 0600", fi.Mode(), err)
	}
	g := PortalGrant{CustomerID: "c-1", Subject: "s-1", Meters: []string{"emails"}}
	tok, id, err := pk.Issue(g, t0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p, err := pk.Verify(tok, t0.Add(time.Minute))
	if err != nil || p.ID != "portal:"+id || p.Kind != KindPortal || p.CustomerID != "c-1" || p.Subject != "s-1" || !p.Can(ScopeRead) || p.Can(ScopeIngest) || len(p.Meters) != 1 {
		t.Fatalf("Verify = %+v, %v", p, err)
	}
	if _, err := pk.Verify(tok, t0.Add(time.Hour)); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("at expiry: %v", err)
	}
	if _, _, err := pk.Issue(g, t0, 25*time.Hour); err == nil {
		t.Error("a ttl over the maximum was accepted")
	}
	// Tampering with the claims breaks the signature.
	parts := strings.Split(tok, ".")
	forged := parts[0] + "." + strings.ReplaceAll(parts[1], "Yy0x", "Yy0y") + "." + parts[2]
	if forged != tok {
		if _, err := pk.Verify(forged, t0); err == nil {
			t.Error("a forged token verified")
		}
	}
	// A token of another key (another installation) does not verify.
	other, _ := NewPortalKeys([]byte(strings.Repeat("x", 32)))
	otok, _, _ := other.Issue(g, t0, time.Hour)
	if _, err := pk.Verify(otok, t0); err == nil {
		t.Error("another installation's token verified")
	}
	// Rotation: new tokens use the new key; old ones verify until they
	// expire; after a second rotation the first key is gone.
	if err := RotatePortalKey(path); err != nil {
		t.Fatal(err)
	}
	pk2, err := LoadPortalKeys(path)
	if err != nil {
		t.Fatal(err)
	}
	tok2, _, _ := pk2.Issue(g, t0, time.Hour)
	if kidOf(t, tok2) == kidOf(t, tok) {
		t.Error("after a rotation new tokens are signed with the old key")
	}
	for _, tk := range []string{tok, tok2} {
		if _, err := pk2.Verify(tk, t0); err != nil {
			t.Errorf("after one rotation: %v", err)
		}
	}
	if err := RotatePortalKey(path); err != nil {
		t.Fatal(err)
	}
	pk3, _ := LoadPortalKeys(path)
	if _, err := pk3.Verify(tok, t0); err == nil {
		t.Error("after two rotations the first key still verifies")
	}
	if _, err := pk3.Verify(tok2, t0); err != nil {
		t.Errorf("after two rotations the previous key must verify: %v", err)
	}
	// A running server's keys follow the file.
	pk2.mu.Lock()
	pk2.checked = time.Time{}
	pk2.mu.Unlock()
	if _, err := pk2.Verify(tok, t0); err == nil {
		t.Error("a loaded key ring did not pick up the rotation")
	}
}

func kidOf(t *testing.T, tok string) string {
	t.Helper()
	tk, _, err := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	kid, _ := tk.Header["kid"].(string)
	return kid
}

func TestChain(t *testing.T) {
	fk := &fakeKeys{byHash: map[string]store.APIKey{}}
	key, hash, _ := NewAPIKey()
	fk.byHash[hash] = store.APIKey{ID: "key_1", Scope: "read", Hash: hash}
	pk, _ := NewPortalKeys([]byte(strings.Repeat("k", 32)))
	c := &Chain{Admin: NewAdminToken("root-token"), Keys: &Keys{Store: fk, Now: func() time.Time { return t0 }}, Portal: pk, Now: func() time.Time { return t0 }}
	ptok, _, _ := pk.Issue(PortalGrant{CustomerID: "c-1"}, t0, time.Hour)
	for _, tc := range []struct {
		name, tok, id string
	}{
		{"admin token", "root-token", "admin-token"},
		{"api key", key, "key_1"},
		{"portal token", ptok, ""},
		{"wrong", "root-tokeN", "!"},
		{"jwt without oidc", "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln", "!"},
	} {
		p, err := c.Token(t.Context(), tc.tok)
		switch {
		case tc.id == "!" && !errors.Is(err, ErrUnauthenticated):
			t.Errorf("%s: %+v, %v; want ErrUnauthenticated", tc.name, p, err)
		case tc.id != "!" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.id != "!" && tc.id != "" && p.ID != tc.id:
			t.Errorf("%s: principal %q, want %q", tc.name, p.ID, tc.id)
		}
	}
	c.SetOpen(true)
	r := httptestRequest("")
	if p, err := c.Authenticate(r); err != nil || p.Kind != KindAnonymous || !p.Admin {
		t.Errorf("open mode without a header: %+v, %v", p, err)
	}
	if _, err := c.Authenticate(httptestRequest("Bearer nope")); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("open mode with a bad credential: %v, want ErrUnauthenticated", err)
	}
	c.EndOpenMode()
	if _, err := c.Authenticate(httptestRequest("")); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("after open mode: %v", err)
	}
}

func TestPortalTokenRevocation(t *testing.T) {
	pk, err := NewPortalKeys([]byte(strings.Repeat("r", 32)))
	if err != nil {
		t.Fatal(err)
	}
	g := PortalGrant{CustomerID: "c-1"}
	tok, id, err := pk.Issue(g, t0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other, otherID, _ := pk.Issue(g, t0, 2*time.Hour)
	if _, err := pk.Verify(tok, t0); err != nil {
		t.Fatalf("before revocation: %v", err)
	}
	pk.Revoke(id, t0.Add(time.Hour), t0)
	_, err = pk.Verify(tok, t0.Add(time.Second))
	if !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("a revoked token: %v, want ErrUnauthenticated saying it was revoked", err)
	}
	if _, err := pk.Verify(other, t0.Add(time.Second)); err != nil {
		t.Errorf("another token of the same customer stopped working: %v", err)
	}
	// Once the revoked token expired, revoking another forgets it: the
	// set holds only what could still be used.
	pk.Revoke(otherID, t0.Add(2*time.Hour), t0.Add(time.Hour))
	if pk.Revoked(id) || !pk.Revoked(otherID) {
		t.Errorf("after expiry: Revoked(expired) = %v, Revoked(other) = %v; want false, true", pk.Revoked(id), pk.Revoked(otherID))
	}
	if _, err := pk.Verify(tok, t0.Add(time.Hour)); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("the expired token: %v, want ErrUnauthenticated", err)
	}
	// Revoking an already expired token stores nothing.
	pk.Revoke("ptk_old", t0, t0.Add(time.Hour))
	if pk.Revoked("ptk_old") {
		t.Error("an expired token's revocation was kept")
	}
}
