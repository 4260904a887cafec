package auth

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tally-metering/tally/internal/bounds"
)

// Portal token claims: tally is the issuer and the portal the audience, so
// that neither an OIDC token nor any other HMAC token of the same secret
// passes as a portal token.
const (
	PortalIssuer   = "tally"
	PortalAudience = "tally-portal"
)

// MaxPortalTTL bounds a portal token's lifetime. It is also how long a
// previous signing key must be kept after a rotation.
const MaxPortalTTL = 24 * time.Hour

// PortalKeyFile is the signing key file's name in the data directory.
const PortalKeyFile = "portal-signing-keys.json"

// portalKey is one HMAC-SHA256 signing key.
type portalKey struct {
	ID     string `json:"id"`
	Secret []byte `json:"secret"`
}

func newPortalKey() (portalKey, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return portalKey{}, fmt.Errorf("generate portal signing key: %w", err)
	}
	return portalKeyOf(b), nil
}

// portalKeyOf names a secret by its hash, so the token header (kid) says
// which key signed it without revealing anything of the key.
func portalKeyOf(secret []byte) portalKey {
	sum := sha256.Sum256(secret)
	return portalKey{ID: hex.EncodeToString(sum[:6]), Secret: secret}
}

type portalKeyFile struct {
	// Keys: the first signs, all verify.
	Keys []portalKey `json:"keys"`
}

// PortalKeys signs and verifies portal tokens. The first key signs; every
// key verifies, so a token signed before a rotation stays valid until it
// expires. Keys from a file are re-read when the file changes (see
// RotatePortalKey), so a rotation needs no restart.
type PortalKeys struct {
	path string

	mu      sync.Mutex
	keys    []portalKey
	modTime time.Time
	file    os.FileInfo // the file the keys were read from
	checked time.Time

	// revoked holds the ids of revoked tokens that have not expired yet,
	// with their expiry: checked on every portal request, so in memory.
	revMu   sync.RWMutex
	revoked map[string]time.Time
}

// NewPortalKeys returns fixed keys: secrets[0] signs, all verify. Each
// secret must be at least 32 bytes.
func NewPortalKeys(secrets ...[]byte) (*PortalKeys, error) {
	if len(secrets) == 0 {
		return nil, errors.New("portal signing keys: none given")
	}
	pk := &PortalKeys{}
	for i, s := range secrets {
		if len(s) < 32 {
			return nil, fmt.Errorf("portal signing key %d: %d bytes, need at least 32", i+1, len(s))
		}
		pk.keys = append(pk.keys, portalKeyOf(s))
	}
	return pk, nil
}

// LoadPortalKeys reads the key file at path, creating it with a new random
// key (readable by its owner only) when it does not exist.
func LoadPortalKeys(path string) (*PortalKeys, error) {
	pk := &PortalKeys{path: path}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		k, err := newPortalKey()
		if err != nil {
			return nil, err
		}
		if err := writePortalKeys(path, []portalKey{k}); err != nil {
			return nil, err
		}
	}
	if err := pk.reload(); err != nil {
		return nil, err
	}
	return pk, nil
}

// RotatePortalKey puts a new signing key first in the file at path and
// keeps the one before it for verification only (older ones are dropped:
// rotate again no sooner than MaxPortalTTL after a rotation). A running
// server picks the change up within seconds.
func RotatePortalKey(path string) error {
	pk, err := LoadPortalKeys(path)
	if err != nil {
		return err
	}
	k, err := newPortalKey()
	if err != nil {
		return err
	}
	return writePortalKeys(path, []portalKey{k, pk.keys[0]})
}

func writePortalKeys(path string, keys []portalKey) error {
	b, err := json.MarshalIndent(portalKeyFile{Keys: keys}, "", "  ")
	if err != nil {
		return fmt.Errorf("write portal signing keys: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".portal-keys-*")
	if err != nil {
		return fmt.Errorf("write portal signing keys: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write portal signing keys: %w", err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("write portal signing keys: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write portal signing keys: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write portal signing keys: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write portal signing keys: %w", err)
	}
	return nil
}

func (pk *PortalKeys) reload() error {
	fi, err := os.Stat(pk.path)
	if err != nil {
		return fmt.Errorf("read portal signing keys: %w", err)
	}
	b, err := os.ReadFile(pk.path)
	if err != nil {
		return fmt.Errorf("read portal signing keys: %w", err)
	}
	var f portalKeyFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return fmt.Errorf("read portal signing keys %s: %w", pk.path, err)
	}
	if len(f.Keys) == 0 {
		return fmt.Errorf("read portal signing keys %s: no keys", pk.path)
	}
	for i, k := range f.Keys {
		if len(k.Secret) < 32 {
			return fmt.Errorf("read portal signing keys %s: key %d is shorter than 32 bytes", pk.path, i+1)
		}
		f.Keys[i] = portalKeyOf(k.Secret)
	}
	pk.keys, pk.modTime, pk.file = f.Keys, fi.ModTime(), fi
	return nil
}

// current returns the keys, re-reading the file if it changed (checked at
// most once a second).
func (pk *PortalKeys) current() []portalKey {
	pk.mu.Lock()
	defer pk.mu.Unlock()
	if pk.path != "" && time.Since(pk.checked) > time.Second {
		pk.checked = time.Now()
		// A rotation renames a new file into place: another file, even
		// when two rotations fall within the clock's granularity.
		if fi, err := os.Stat(pk.path); err == nil && (!fi.ModTime().Equal(pk.modTime) || pk.file == nil || !os.SameFile(fi, pk.file)) {
			_ = pk.reload() // keep the keys we have if the new file is bad
		}
	}
	return pk.keys
}

// PortalGrant is what a portal token allows: one customer's data (or one
// of its subjects'), for the meters listed (nil: all).
type PortalGrant struct {
	CustomerID string
	Subject    string
	Meters     []string
}

// portalClaims are a portal token's claims.
type portalClaims struct {
	jwt.RegisteredClaims
	Customer string   `json:"cus"`
	Subject  string   `json:"sbj,omitempty"`
	Meters   []string `json:"mtr,omitempty"`
}

// Issue signs a portal token for g, valid from now for ttl.
func (pk *PortalKeys) Issue(g PortalGrant, now time.Time, ttl time.Duration) (token, id string, err error) {
	if g.CustomerID == "" {
		return "", "", errors.New("issue portal token: no customer")
	}
	if ttl <= 0 || ttl > MaxPortalTTL {
		return "", "", fmt.Errorf("issue portal token: ttl %s is not in (0, %s]", ttl, MaxPortalTTL)
	}
	if g.Subject != "" {
		if err := bounds.CheckSubject(g.Subject); err != nil {
			return "", "", fmt.Errorf("issue portal token: subject %w", err)
		}
	}
	var jti [12]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", "", fmt.Errorf("issue portal token: %w", err)
	}
	id = "ptk_" + base64.RawURLEncoding.EncodeToString(jti[:])
	claims := portalClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: PortalIssuer, Audience: jwt.ClaimStrings{PortalAudience}, Subject: g.CustomerID, ID: id,
			IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
		Customer: g.CustomerID, Subject: g.Subject, Meters: g.Meters,
	}
	k := pk.current()[0]
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	t.Header["kid"] = k.ID
	token, err = t.SignedString(k.Secret)
	if err != nil {
		return "", "", fmt.Errorf("issue portal token: %w", err)
	}
	return token, id, nil
}

// Revoke makes Verify refuse the token with id (its jti) from now on; it
// is remembered until expiresAt, after which the token fails as expired
// anyway. The set is this process's: the caller persists the revocation
// and loads it again at start (tally serve does, from its store).
func (pk *PortalKeys) Revoke(id string, expiresAt time.Time, now time.Time) {
	pk.revMu.Lock()
	defer pk.revMu.Unlock()
	if pk.revoked == nil {
		pk.revoked = make(map[string]time.Time)
	}
	// Forget what expired, so the set holds only what can still be used:
	// at most the tokens revoked within MaxPortalTTL.
	for rid, exp := range pk.revoked {
		if !exp.After(now) {
			delete(pk.revoked, rid)
		}
	}
	if expiresAt.After(now) {
		pk.revoked[id] = expiresAt
	}
}

// Revoked reports whether the token with id was revoked.
func (pk *PortalKeys) Revoked(id string) bool {
	pk.revMu.RLock()
	defer pk.revMu.RUnlock()
	_, ok := pk.revoked[id]
	return ok
}

// Verify checks a portal token's signature (HS256 only), issuer, audience,
// expiry and that it was not revoked, and returns its principal: read scope, bound to the token's
// customer, restricted to portal endpoints.
func (pk *PortalKeys) Verify(token string, now time.Time) (Principal, error) {
	keys := pk.current()
	var c portalClaims
	_, err := jwt.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		i := slices.IndexFunc(keys, func(k portalKey) bool { return k.ID == kid })
		if i < 0 {
			return nil, errors.New("unknown signing key")
		}
		return keys[i].Secret, nil
	}, jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}), jwt.WithIssuer(PortalIssuer),
		jwt.WithAudience(PortalAudience), jwt.WithExpirationRequired(), jwt.WithIssuedAt(), jwt.WithStrictDecoding(),
		jwt.WithTimeFunc(func() time.Time { return now }))
	if err != nil {
		if errors.Is(err, jwt.ErrTokenExpired) {
			return Principal{}, fmt.Errorf("%w (the portal token expired; ask for a new one)", ErrUnauthenticated)
		}
		return Principal{}, ErrUnauthenticated
	}
	if c.Customer == "" || c.ID == "" || c.Subject != "" && bounds.CheckSubject(c.Subject) != nil {
		return Principal{}, ErrUnauthenticated
	}
	if pk.Revoked(c.ID) {
		return Principal{}, fmt.Errorf("%w (the portal token was revoked; ask for a new one)", ErrUnauthenticated)
	}
	return Principal{
		ID: "portal:" + c.ID, Kind: KindPortal, Scopes: []Scope{ScopeRead},
		CustomerID: c.Customer, Subject: c.Subject, Meters: c.Meters,
	}, nil
}
