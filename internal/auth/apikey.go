package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/tally-metering/tally/internal/bounds"
	"github.com/tally-metering/tally/internal/store"
)

// KeyPrefix starts every API key, so that a leaked key is recognisable
// (by secret scanners too) and tells itself apart from tokens.
const KeyPrefix = "tly_"

// keyEncoding writes keys in lowercase letters and digits only: easy to
// copy, safe in URLs and shells.
var keyEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// keyLen is the length of a key: the prefix and 256 random bits.
var keyLen = len(KeyPrefix) + keyEncoding.EncodedLen(32)

// NewAPIKey returns a new random key and the hash under which it is stored.
// The key itself is shown once and never kept.
func NewAPIKey() (key, hash string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("generate api key: %w", err)
	}
	key = KeyPrefix + keyEncoding.EncodeToString(b[:])
	return key, HashAPIKey(key), nil
}

// HashAPIKey is the hex SHA-256 of a key. A key carries 256 random bits,
// so a plain hash is enough: there is nothing to brute-force.
func HashAPIKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// KeyDisplayPrefix is the start of a key that may be shown and stored, to
// tell keys apart: the prefix and 8 characters (40 of its 256 bits).
func KeyDisplayPrefix(key string) string {
	if len(key) < len(KeyPrefix)+8 {
		return KeyPrefix
	}
	return key[:len(KeyPrefix)+8]
}

// ParseAPIKey reports whether tok has the shape of an API key.
func ParseAPIKey(tok string) bool {
	if len(tok) != keyLen || !strings.HasPrefix(tok, KeyPrefix) {
		return false
	}
	// Check every character: the base32 decoder would skip newlines.
	for _, c := range tok[len(KeyPrefix):] {
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// KeyStore is what Keys needs of the store.
type KeyStore interface {
	// APIKeyByHash finds a key by the hash of its secret; store.ErrNotFound
	// if there is none.
	APIKeyByHash(ctx context.Context, hash string) (store.APIKey, error)
	// TouchAPIKey records that a key was used.
	TouchAPIKey(ctx context.Context, id string, at time.Time) error
}

// TouchInterval is how often at most a key's last-used time is written:
// often enough to tell a live key from a forgotten one, rarely enough that
// using a key costs no write.
const TouchInterval = time.Minute

// Keys verifies API keys against the store.
type Keys struct {
	Store KeyStore
	Now   func() time.Time
	Log   *slog.Logger

	mu      sync.Mutex
	touched map[string]time.Time // key id -> last written last-used time
}

// Verify returns the principal of an API key, or an error wrapping
// ErrUnauthenticated when the key is unknown, expired or revoked.
func (k *Keys) Verify(ctx context.Context, key string) (Principal, error) {
	if !ParseAPIKey(key) {
		return Principal{}, ErrUnauthenticated
	}
	hash := HashAPIKey(key)
	rec, err := k.Store.APIKeyByHash(ctx, hash)
	if errors.Is(err, store.ErrNotFound) {
		return Principal{}, ErrUnauthenticated
	}
	if err != nil {
		return Principal{}, fmt.Errorf("verify api key: %w", err)
	}
	// The lookup went by hash; compare again in constant time so that no
	// code path depends on how much of the hash matched.
	if subtle.ConstantTimeCompare([]byte(rec.Hash), []byte(hash)) != 1 {
		return Principal{}, ErrUnauthenticated
	}
	now := k.now()
	if rec.RevokedAt != nil && !rec.RevokedAt.After(now) {
		return Principal{}, fmt.Errorf("%w (API key %s was revoked; create a new one)", ErrUnauthenticated, rec.ID)
	}
	if rec.ExpiresAt != nil && !rec.ExpiresAt.After(now) {
		return Principal{}, fmt.Errorf("%w (API key %s expired at %s; create a new one)", ErrUnauthenticated, rec.ID, rec.ExpiresAt.UTC().Format(time.RFC3339))
	}
	k.touch(ctx, rec.ID, now)
	scope, err := ParseScope(rec.Scope)
	if err != nil {
		return Principal{}, fmt.Errorf("api key %s: %w", rec.ID, err)
	}
	if rec.Subject != "" {
		// A key stored before subjects had one syntax may be bound to a
		// subject no event can have now ("\x00"): it binds to nothing.
		if err := bounds.CheckSubject(rec.Subject); err != nil {
			return Principal{}, &ForbiddenError{Msg: fmt.Sprintf("API key %s is bound to an invalid subject (%v); create a new one", rec.ID, err)}
		}
	}
	return Principal{
		ID: rec.ID, Kind: KindKey, Admin: scope == ScopeAdmin, Scopes: []Scope{scope},
		CustomerID: rec.CustomerID, Subject: rec.Subject,
	}, nil
}

// touch writes the key's last-used time at most once per TouchInterval.
func (k *Keys) touch(ctx context.Context, id string, now time.Time) {
	k.mu.Lock()
	if k.touched == nil {
		k.touched = make(map[string]time.Time)
	}
	last, ok := k.touched[id]
	if ok && now.Sub(last) < TouchInterval && !now.Before(last) {
		k.mu.Unlock()
		return
	}
	k.touched[id] = now
	k.mu.Unlock()
	if err := k.Store.TouchAPIKey(ctx, id, now); err != nil && k.Log != nil {
		k.Log.Warn("record api key use", "key", id, "err", err)
	}
}

func (k *Keys) now() time.Time {
	if k.Now == nil {
		return time.Now()
	}
	return k.Now()
}
