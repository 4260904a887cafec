package auth

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tally-metering/tally/internal/store"
)

// fuzzChain is a chain with an admin token, one API key and portal keys,
// and the key and a portal token. Everything is fixed, so that every fuzz
// worker process has the same credentials.
func fuzzChain(f *testing.F) (*Chain, string, string) {
	key := KeyPrefix + strings.Repeat("abcd", 13)
	hash := HashAPIKey(key)
	fk := &fakeKeys{byHash: map[string]store.APIKey{hash: {ID: "key_1", Scope: "read", Hash: hash}}}
	pk, err := NewPortalKeys([]byte(strings.Repeat("k", 32)))
	if err != nil {
		f.Fatal(err)
	}
	claims := portalClaims{
		RegisteredClaims: jwt.RegisteredClaims{Issuer: PortalIssuer, Audience: jwt.ClaimStrings{PortalAudience}, Subject: "c-1",
			ID: "ptk_fuzz", IssuedAt: jwt.NewNumericDate(t0), ExpiresAt: jwt.NewNumericDate(t0.Add(time.Hour))},
		Customer: "c-1",
	}
	tk := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	tk.Header["kid"] = pk.keys[0].ID
	ptok, err := tk.SignedString(pk.keys[0].Secret)
	if err != nil {
		f.Fatal(err)
	}
	now := func() time.Time { return t0 }
	return &Chain{Admin: NewAdminToken("root-token"), Keys: &Keys{Store: fk, Now: now}, Portal: pk, Now: now}, key, ptok
}

// FuzzAuthorization feeds arbitrary Authorization headers to the chain:
// it must never panic, and accept only the three real credentials.
func FuzzAuthorization(f *testing.F) {
	c, key, ptok := fuzzChain(f)
	for _, s := range []string{"Bearer root-token", "bearer " + key, "Bearer " + ptok, "Bearer", "Basic cm9vdA==",
		"Bearer tly_", "Bearer " + key[:len(key)-1] + "b", "Bearer a.b.c", "Bearer eyJhbGciOiJub25lIn0.eyJpc3MiOiJ0YWxseSJ9.",
		"Bearer " + strings.Replace(ptok, ".", "..", 1), "Bearer  root-token  ", "Bearer root-token x"} {
		f.Add(s)
	}
	valid := map[string]string{"root-token": "admin-token", key: "key_1", ptok: "portal:ptk_fuzz"}
	f.Fuzz(func(t *testing.T, h string) {
		r := httptest.NewRequest("GET", "/api/v1/meters", nil)
		r.Header["Authorization"] = []string{h}
		p, err := c.Authenticate(r)
		tok, ok := BearerToken(h)
		want, isValid := valid[tok]
		if err != nil {
			var fe *ForbiddenError
			if !errors.Is(err, ErrUnauthenticated) && !errors.As(err, &fe) {
				t.Fatalf("Authenticate(%q): unexpected error kind %v", h, err)
			}
			if ok && isValid {
				t.Fatalf("Authenticate(%q) refused a valid credential: %v", h, err)
			}
			return
		}
		if !ok || !isValid {
			t.Fatalf("Authenticate(%q) accepted %+v", h, p)
		}
		if p.ID != want {
			t.Fatalf("Authenticate(%q) = %s, want %s", h, p.ID, want)
		}
	})
}

// FuzzPortalToken mutates portal tokens: only the issued token, byte for
// byte, verifies (strict base64 decoding refuses re-encodings of it).
func FuzzPortalToken(f *testing.F) {
	c, _, ptok := fuzzChain(f)
	f.Add(ptok)
	f.Add(ptok + "x")
	f.Add(strings.ToUpper(ptok))
	f.Add("eyJhbGciOiJIUzI1NiJ9.e30.")
	f.Fuzz(func(t *testing.T, tok string) {
		p, err := c.Portal.Verify(tok, t0)
		if err == nil && tok != ptok {
			t.Fatalf("Verify accepted a token that was not issued: %q → %+v", tok, p)
		}
		if err != nil && tok == ptok {
			t.Fatalf("Verify refused the issued token: %v", err)
		}
	})
}

// FuzzParseAPIKey checks that only well-formed keys pass the shape check.
func FuzzParseAPIKey(f *testing.F) {
	key, _, _ := NewAPIKey()
	for _, s := range []string{key, "tly_", "tly_" + strings.Repeat("a", 52), "tly_" + strings.Repeat("A", 52), "tly_" + strings.Repeat("1", 52), ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !ParseAPIKey(s) {
			return
		}
		if len(s) != keyLen || !strings.HasPrefix(s, KeyPrefix) || strings.ContainsFunc(s[len(KeyPrefix):], func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= '2' && r <= '7')
		}) {
			t.Fatalf("ParseAPIKey accepted %q", s)
		}
	})
}
