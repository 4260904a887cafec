package auth

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tally-metering/tally/internal/store"
)

// TestKeyBoundToInvalidSubject: a key stored bound to a subject outside
// the subject syntax ("\x00", once an internal marker) authenticates as
// nobody rather than as an oddly bound principal.
func TestKeyBoundToInvalidSubject(t *testing.T) {
	fk := &fakeKeys{byHash: map[string]store.APIKey{}}
	key, hash, err := NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	fk.byHash[hash] = store.APIKey{ID: "key_nul", Scope: "read", Hash: hash, CustomerID: "c-1", Subject: "\x00"}
	ks := &Keys{Store: fk, Now: func() time.Time { return t0 }}
	p, err := ks.Verify(t.Context(), key)
	var fe *ForbiddenError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), "U+0000") {
		t.Errorf("Verify = %+v, %v; want a ForbiddenError naming U+0000", p, err)
	}
}

// TestPortalTokenInvalidSubject: no portal token is issued for a subject
// outside the syntax.
func TestPortalTokenInvalidSubject(t *testing.T) {
	pk, err := NewPortalKeys([]byte(strings.Repeat("p", 32)))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := pk.Issue(PortalGrant{CustomerID: "c-1", Subject: "a\nb"}, t0, time.Hour); err == nil || !strings.Contains(err.Error(), "U+000A") {
		t.Errorf("Issue for subject a\\nb = %v, want an error naming U+000A", err)
	}
}

// TestOIDCSubjectClaims: a token whose subject claim fails the subject
// syntax is refused (403), and one whose sub does is not authenticated
// (401); neither yields an unbound or oddly bound principal.
func TestOIDCSubjectClaims(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": []map[string]string{{
			"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256",
			"n": base64.RawURLEncoding.EncodeToString(key.N.Bytes()),
			"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(key.E)).Bytes()),
		}}})
	}))
	defer jwks.Close()
	o, err := NewOIDC(t.Context(), OIDCConfig{Issuer: "https://issuer.test", Audience: "tally", JWKSURL: jwks.URL,
		CustomerClaim: "tally_customer", SubjectClaim: "tally_subject", ScopePrefix: "tally:"})
	if err != nil {
		t.Fatal(err)
	}
	token := func(sub, subject string) string {
		claims := jwt.MapClaims{"iss": "https://issuer.test", "aud": "tally", "sub": sub, "exp": t0.Add(time.Hour).Unix(),
			"scope": "tally:read", "tally_customer": "contoso", "tally_subject": subject}
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
		tok.Header["kid"] = "k1"
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	id, err := o.Verify(t.Context(), token("user-1", "contoso-eu-1"), t0)
	if err != nil || id.DeploymentSubject != "contoso-eu-1" || id.Customer != "contoso" {
		t.Fatalf("valid token: %+v, %v", id, err)
	}
	for _, subject := range []string{"\x00", "a\nb", "contoso-eu-1\u202e", strings.Repeat("s", 257)} {
		id, err := o.Verify(t.Context(), token("user-1", subject), t0)
		var fe *ForbiddenError
		if !errors.As(err, &fe) || !strings.Contains(err.Error(), `"tally_subject" claim is not a valid subject`) {
			t.Errorf("subject claim %q: %+v, %v; want a ForbiddenError", subject, id, err)
		}
	}
	for _, sub := range []string{"user\x00", "user\r\n1", strings.Repeat("u", 300)} {
		id, err := o.Verify(t.Context(), token(sub, "contoso-eu-1"), t0)
		if !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), "sub claim") {
			t.Errorf("sub %q: %+v, %v; want ErrUnauthenticated about the sub claim", sub, id, err)
		}
	}
}
