package httpapi

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
)

// apiKeyShape matches an API key anywhere in a text.
var apiKeyShape = regexp.MustCompile(`tly_[a-z2-7]{8}`)

func TestAuditBodyRedacts(t *testing.T) {
	key := "tly_" + strings.Repeat("abcd", 13)
	jwtTok := "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"
	for _, tc := range []struct{ in, want string }{
		{`{"key":"contoso","name":"C"}`, `{"key":"contoso","name":"C"}`},
		{`{"metadata":{"apiToken":"abc","client_secret":"s","Password":"p","note":"` + key + `"}}`,
			`{"metadata":{"Password":"[redacted]","apiToken":"[redacted]","client_secret":"[redacted]","note":"[redacted]"}}`},
		{`["Bearer ` + key + `", "` + jwtTok + `", 1.50]`, `["[redacted]","[redacted]",1.50]`},
		{`{"` + key + `":1}`, `{"[redacted]":"[redacted]"}`},
		{`not json ` + key, `{"redacted":"body is not JSON (65 bytes)"}`},
		{`  `, ``},
	} {
		got := string(auditBody([]byte(tc.in)))
		if got != tc.want {
			t.Errorf("auditBody(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// FuzzAuditBody: whatever the body, what the audit trail keeps is JSON
// (or nothing) and holds no API key.
func FuzzAuditBody(f *testing.F) {
	key := "tly_" + strings.Repeat("abcd", 13)
	for _, s := range []string{`{"a":"` + key + `"}`, `[{"token":1}]`, `{"` + key + `":{"x":"y"}}`, `"` + key + `"`, `{"a":"\u0074ly_abcdabcd"}`, `1e400`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		out := auditBody([]byte(body))
		if out == nil {
			return
		}
		if !json.Valid(out) {
			t.Fatalf("auditBody(%q) = %s, not JSON", body, out)
		}
		var v any
		_ = json.Unmarshal(out, &v)
		plain, _ := json.Marshal(v)
		if apiKeyShape.Match(out) || apiKeyShape.Match(plain) {
			t.Fatalf("auditBody(%q) keeps a key: %s", body, out)
		}
	})
}

func TestLooksSecretShapes(t *testing.T) {
	aws := "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{aws, true},
		{"key=" + aws + ";", true},
		{aws + "A", false},       // 41 characters: not an AWS key
		{"A" + aws[1:39], false}, // 39
		{"0123456789abcdef0123456789abcdef01234567", false}, // a SHA-1
		{"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmn", false}, // no digit
		{"sk_live_", false},                                       // a prefix named
		{"pk_live_51H8abcdefghijkl", false},                       // publishable
		{"x sk_test_1 y", true},                                   // a piece of a key
		{"whsec_abc", true},                                       // webhook secret
		{"ASIAIOSFODNN7EXAMPLE", true},                            // temporary access key id
		{"-----BEGIN OPENSSH PRIVATE KEY-----", true},             // private key
		{"-----BEGIN PUBLIC KEY-----", false},                     // public key
		{"Xy48Q~aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456.", true},        // Azure client secret
		{"see https://example.com/~user/page and Q~ here", false}, // a tilde in a URL
	} {
		if got := looksSecret(tc.in); got != tc.want {
			t.Errorf("looksSecret(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
	rd := redactor{secrets: []string{"hunter2-but-longer"}}
	got := string(rd.body([]byte(`{"a":["x",{"b":"pre hunter2-but-longer post"}],"hunter2-but-longer":1,"n":"hunter2"}`)))
	if want := `{"[redacted]":"[redacted]","a":["x",{"b":"[redacted]"}],"n":"hunter2"}`; got != want {
		t.Errorf("redactor.body = %s, want %s", got, want)
	}
}
