package store

import (
	"context"
	"encoding/json"
	"time"
)

// APIKey is an API key as kept: never the key itself, only its SHA-256
// hash, so that a copy of the database grants nothing.
type APIKey struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
	// Prefix is the key's first characters, shown so a person can tell
	// keys apart; it is too short to guess the rest from.
	Prefix string `json:"prefix"`
	// Hash is the hex SHA-256 of the whole key.
	Hash  string `json:"-"`
	Scope string `json:"scope"`
	// CustomerID binds the key to a customer (empty: unbound), Subject
	// further to one of its subjects.
	CustomerID string     `json:"customer,omitempty"`
	Subject    string     `json:"subject,omitempty"`
	CreatedBy  string     `json:"createdBy,omitempty"`
	CreatedAt  time.Time  `json:"createdAt"`
	ExpiresAt  *time.Time `json:"expiresAt,omitempty"`
	RevokedAt  *time.Time `json:"revokedAt,omitempty"`
	LastUsedAt *time.Time `json:"lastUsedAt,omitempty"`
}

// APIKeys keeps API keys. A key is never deleted: revoking it keeps it,
// so the audit trail can name it.
type APIKeys interface {
	// CreateAPIKey stores a new key; ErrConflict if its id or hash is
	// taken.
	CreateAPIKey(ctx context.Context, k APIKey) error
	// GetAPIKey finds a key by id; ErrNotFound if there is none.
	GetAPIKey(ctx context.Context, id string) (APIKey, error)
	// APIKeyByHash finds a key (revoked and expired ones too) by the hash
	// of its secret; ErrNotFound if there is none.
	APIKeyByHash(ctx context.Context, hash string) (APIKey, error)
	// ListAPIKeys returns every key, oldest first.
	ListAPIKeys(ctx context.Context) ([]APIKey, error)
	// RevokeAPIKey revokes the key at at and returns it. Revoking a
	// revoked key keeps its first revocation time. ErrNotFound if there
	// is no such key.
	RevokeAPIKey(ctx context.Context, id string, at time.Time) (APIKey, error)
	// TouchAPIKey records that the key was used at at (a later time than
	// the recorded one wins; an earlier one changes nothing). ErrNotFound
	// if there is no such key.
	TouchAPIKey(ctx context.Context, id string, at time.Time) error
}

// AuditEntry is one administrative change: who made it, when, and what.
type AuditEntry struct {
	Seq int64     `json:"seq"`
	At  time.Time `json:"at"`
	// Actor names the credential (a key id, "admin-token", "oidc:<sub>"),
	// never its secret.
	Actor  string `json:"actor"`
	Method string `json:"method"`
	// Route is the route pattern ("/api/v1/customers/{idOrKey}"), Path
	// the path requested.
	Route  string `json:"route"`
	Path   string `json:"path"`
	Target string `json:"target,omitempty"`
	Status int    `json:"status"`
	// Body is the request body with secrets redacted (nil when empty or
	// not JSON).
	Body json.RawMessage `json:"body,omitempty"`
}

// AuditFilter selects audit entries; zero fields don't filter.
type AuditFilter struct {
	// From and To bound At: [From, To).
	From, To time.Time
	Actor    string
	Target   string
	// Before keeps entries with Seq below it (for paging backwards).
	Before int64
	Limit  int
}

// Audit keeps the audit trail. Entries are appended and never changed.
type Audit interface {
	// AppendAudit stores e and returns its sequence number.
	AppendAudit(ctx context.Context, e AuditEntry) (int64, error)
	// ListAudit returns the entries f selects, newest first.
	ListAudit(ctx context.Context, f AuditFilter) ([]AuditEntry, error)
}

// PortalToken is an issued portal token as kept: its id (the token's jti)
// and what it grants, never the token itself.
type PortalToken struct {
	ID         string `json:"id"`
	CustomerID string `json:"customer"`
	Subject    string `json:"subject,omitempty"`
	// Meters are the meter slugs the token may query (nil: every meter).
	Meters    []string   `json:"meters,omitempty"`
	CreatedBy string     `json:"createdBy,omitempty"`
	CreatedAt time.Time  `json:"createdAt"`
	ExpiresAt time.Time  `json:"expiresAt"`
	RevokedAt *time.Time `json:"revokedAt,omitempty"`
}

// PortalTokenFilter selects portal tokens; zero fields don't filter.
type PortalTokenFilter struct {
	CustomerID string
	// ExpiresAfter keeps tokens that expire after it.
	ExpiresAfter time.Time
	// Revoked keeps revoked tokens only.
	Revoked bool
}

// PortalTokens keeps the portal tokens issued, so that they can be listed
// and revoked before they expire. A token is kept until it expires (it
// can't be used after) and may be forgotten then.
type PortalTokens interface {
	// CreatePortalToken records an issued token; ErrConflict if its id is
	// taken.
	CreatePortalToken(ctx context.Context, t PortalToken) error
	// GetPortalToken finds a token by id; ErrNotFound if there is none.
	GetPortalToken(ctx context.Context, id string) (PortalToken, error)
	// ListPortalTokens returns the tokens f selects, oldest first.
	ListPortalTokens(ctx context.Context, f PortalTokenFilter) ([]PortalToken, error)
	// RevokePortalToken revokes the token at at and returns it. Revoking a
	// revoked token keeps its first revocation time. ErrNotFound if there
	// is no such token.
	RevokePortalToken(ctx context.Context, id string, at time.Time) (PortalToken, error)
	// RevokeCustomerPortalTokens revokes at at every token of the customer
	// that is neither revoked nor expired at at, and returns those.
	RevokeCustomerPortalTokens(ctx context.Context, customerID string, at time.Time) ([]PortalToken, error)
	// DeleteExpiredPortalTokens forgets the tokens (revoked or not) that
	// expired at or before t, and returns how many.
	DeleteExpiredPortalTokens(ctx context.Context, t time.Time) (int, error)
}

// Auth is what access control keeps: API keys, portal tokens and the
// audit trail.
type Auth interface {
	APIKeys
	PortalTokens
	Audit
}
