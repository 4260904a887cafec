package azure

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tally-metering/tally/internal/report"
)

// tokenSource hands out bearer tokens for the metering service and caches
// each until shortly before it expires.
type tokenSource struct {
	cfg    Config
	client *http.Client
	now    func() time.Time

	mu      sync.Mutex
	token   string
	expires time.Time
}

// tokenTTLMargin is how long before its expiry a cached token is replaced,
// so that a token does not expire between being handed out and being
// checked.
const tokenTTLMargin = 5 * time.Minute

// get returns a cached token, or a new one when none is cached or it is
// about to expire.
func (ts *tokenSource) get(ctx context.Context) (string, error) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.token != "" && ts.now().Before(ts.expires) {
		return ts.token, nil
	}
	tok, ttl, err := ts.fetch(ctx)
	if err != nil {
		return "", err
	}
	margin := min(tokenTTLMargin, ttl/10)
	ts.token, ts.expires = tok, ts.now().Add(ttl-margin)
	return tok, nil
}

// invalidate drops the cached token if it is still tok (a token the
// service refused), so that the next get fetches a new one; a token another
// caller already replaced stays.
func (ts *tokenSource) invalidate(tok string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.token == tok {
		ts.token = ""
	}
}

func (ts *tokenSource) fetch(ctx context.Context) (string, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, ts.cfg.Timeout)
	defer cancel()
	var req *http.Request
	var err error
	if ts.cfg.ManagedIdentity {
		q := url.Values{"api-version": {"2018-02-01"}, "resource": {MeteringResource}}
		if ts.cfg.ClientID != "" {
			q.Set("client_id", ts.cfg.ClientID)
		}
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, ts.cfg.ManagedIdentityURL+"?"+q.Encode(), nil)
		if err != nil {
			return "", 0, fmt.Errorf("managed identity token: %w", err)
		}
		req.Header.Set("Metadata", "true")
	} else {
		form := url.Values{
			"grant_type":    {"client_credentials"},
			"client_id":     {ts.cfg.ClientID},
			"client_secret": {ts.cfg.ClientSecret},
			"resource":      {MeteringResource},
		}
		u := ts.cfg.AuthorityURL + "/" + url.PathEscape(ts.cfg.TenantID) + "/oauth2/token"
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
		if err != nil {
			return "", 0, fmt.Errorf("entra token: %w", err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("Accept", "application/json")
	tok, ttl, err := ts.do(req)
	if err != nil {
		if ts.cfg.ManagedIdentity {
			return "", 0, fmt.Errorf("managed identity token: %w", err)
		}
		return "", 0, fmt.Errorf("entra token: %w", err)
	}
	return tok, ttl, nil
}

// tokenResponse is what both the Entra v1 token endpoint and the instance
// metadata service answer. Both send expires_in as a string; numbers are
// taken too.
type tokenResponse struct {
	AccessToken      string          `json:"access_token"`
	TokenType        string          `json:"token_type"`
	ExpiresIn        json.RawMessage `json:"expires_in"`
	Error            string          `json:"error"`
	ErrorDescription string          `json:"error_description"`
}

func (ts *tokenSource) do(req *http.Request) (string, time.Duration, error) {
	resp, err := ts.client.Do(req)
	if err != nil {
		// The client secret travels in the body, never in the URL, so
		// the transport's error cannot contain it.
		return "", 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", 0, fmt.Errorf("read answer: %w", err)
	}
	var tr tokenResponse
	jsonErr := json.Unmarshal(body, &tr)
	if resp.StatusCode != http.StatusOK {
		msg := fmt.Sprintf("status %d", resp.StatusCode)
		if jsonErr == nil && tr.Error != "" {
			// Entra's descriptions name the problem (AADSTS7000215:
			// invalid client secret) without echoing the secret.
			msg += ": " + tr.Error
			if tr.ErrorDescription != "" {
				msg += ": " + firstLine(tr.ErrorDescription, 300)
			}
		}
		err := errors.New(msg)
		if d, ok := report.ParseRetryAfter(resp.Header.Get("Retry-After"), ts.now()); ok {
			return "", 0, retryAfter(d, err)
		}
		return "", 0, err
	}
	if jsonErr != nil {
		return "", 0, fmt.Errorf("decode answer: %w", jsonErr)
	}
	if tr.AccessToken == "" {
		return "", 0, errors.New("answer holds no access_token")
	}
	if tr.TokenType != "" && !strings.EqualFold(tr.TokenType, "Bearer") {
		return "", 0, fmt.Errorf("token type %q, want Bearer", tr.TokenType)
	}
	secs, err := strconv.ParseInt(strings.Trim(string(tr.ExpiresIn), `"`), 10, 64)
	if err != nil || secs <= 0 {
		return "", 0, fmt.Errorf("answer has no valid expires_in")
	}
	return tr.AccessToken, time.Duration(secs) * time.Second, nil
}

// firstLine returns s up to its first line break, at most n bytes.
func firstLine(s string, n int) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	if len(s) > n {
		s = strings.ToValidUTF8(s[:n], "") + "…"
	}
	return s
}
