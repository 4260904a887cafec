package auth

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestAdminToken(t *testing.T) {
	a := NewAdminToken("s3cret")
	tests := []struct {
		name   string
		header string
		ok     bool
	}{
		{"correct", "Bearer s3cret", true},
		{"scheme is case-insensitive", "bearer s3cret", true},
		{"surrounding spaces", "Bearer   s3cret  ", true},
		{"wrong token", "Bearer s3cre", false},
		{"longer token", "Bearer s3cret2", false},
		{"missing", "", false},
		{"other scheme", "Basic s3cret", false},
		{"no token", "Bearer ", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/api/v1/meters", nil)
			if tt.header != "" {
				r.Header.Set("Authorization", tt.header)
			}
			p, err := a.Authenticate(r)
			if tt.ok {
				if err != nil || !p.Admin || p.ID != "admin-token" {
					t.Fatalf("Authenticate = %+v, %v; want the admin", p, err)
				}
				return
			}
			if !errors.Is(err, ErrUnauthenticated) {
				t.Fatalf("Authenticate error = %v, want ErrUnauthenticated", err)
			}
		})
	}
}

func TestOpenMode(t *testing.T) {
	a := NewAdminToken("")
	if !a.Open() {
		t.Fatal("an empty token must mean open mode")
	}
	p, err := a.Authenticate(httptest.NewRequest("GET", "/", nil))
	if err != nil || !p.Admin {
		t.Fatalf("open mode: %+v, %v", p, err)
	}
	if NewAdminToken("x").Open() {
		t.Fatal("a token must not be open mode")
	}
}

func FuzzBearerToken(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer  x ", "Basic a", "", "Bearer"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		tok, ok := BearerToken(h)
		if ok && tok == "" {
			t.Fatalf("BearerToken(%q) accepted an empty token", h)
		}
		if !ok && tok != "" {
			t.Fatalf("BearerToken(%q) returned %q with ok=false", h, tok)
		}
	})
}

func httptestRequest(authorization string) *http.Request {
	r := httptest.NewRequest("GET", "/api/v1/meters", nil)
	if authorization != "" {
		r.Header.Set("Authorization", authorization)
	}
	return r
}
