// Package azuretest emulates the Azure Marketplace metering service and the
// Microsoft Entra token endpoints it relies on, for tests. It enforces the
// documented rules of the batch usage event API (at most 25 events per call,
// events at most 24 hours old, the first event per resource, dimension and
// hour wins, positive quantities, known resources and dimensions, a valid
// bearer token) and injects faults: error statuses, 429 with Retry-After,
// slow answers, and connections dropped after a batch was accepted.
//
// Serve an Emulator with httptest.NewServer and point a Sender's baseURL,
// authorityURL and managedIdentityURL (server URL +
// ManagedIdentityPath) at it.
package azuretest

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/shopspring/decimal"
)

// MeteringResource is the Entra resource id of the metering service: the
// only audience the emulator issues tokens for.
const MeteringResource = "20e940b3-4c77-4b0b-9a53-9e16a1b010a7"

// APIVersion is the only api-version the emulator serves.
const APIVersion = "2018-08-31"

// ManagedIdentityPath is where the emulator serves managed identity
// tokens, as the instance metadata service does.
const ManagedIdentityPath = "/metadata/identity/oauth2/token"

// MaxBatch is the most events a batch may hold.
const MaxBatch = 25

// Window is how old an event's effectiveStartTime may be.
const Window = 24 * time.Hour

// Resource is a purchased resource usage may be reported for.
type Resource struct {
	// ID is the SaaS subscription id (sent as resourceId) or the managed
	// application's resource group id (sent as resourceUri); compared
	// without regard to case.
	ID string
	// PlanID is the plan the customer bought.
	PlanID string
	// Dimensions are the plan's custom dimensions.
	Dimensions []string
	// Inactive makes events for it ResourceNotActive (suspended or never
	// activated).
	Inactive bool
	// Owner is the client (app) id whose tokens may report for it; any
	// when empty. Others get ResourceNotAuthorized.
	Owner string
}

// Key identifies one hour of usage: Azure keeps one event per resource,
// dimension and hour.
type Key struct {
	Resource  string
	Dimension string
	Hour      time.Time
}

// Event is a usage event the emulator accepted.
type Event struct {
	Key
	UsageEventID string
	Quantity     decimal.Decimal
	// Accepted is the emulator's time when it accepted the event.
	Accepted time.Time

	sent usageEvent
}

// Fault is what the emulator does to one call instead of, or besides,
// answering it. The zero Fault answers normally.
type Fault struct {
	// Status answers the call with this status (500, 503, 429, 403, …)
	// without processing it.
	Status int
	// RetryAfter is sent as Retry-After, in seconds, with Status.
	RetryAfter time.Duration
	// Delay holds the call back before processing it; a client that
	// gives up meanwhile leaves nothing accepted.
	Delay time.Duration
	// DelayAfterAccept holds the answer back after the batch was
	// processed: a client that gives up meanwhile has had its events
	// accepted nonetheless.
	DelayAfterAccept time.Duration
	// Drop processes the batch and then closes the connection without an
	// answer.
	Drop bool
}

// Emulator is an http.Handler serving the metering API
// (POST /api/batchUsageEvent), the Entra client-credentials token endpoint
// (POST /{tenantId}/oauth2/token) and the managed identity endpoint (GET
// ManagedIdentityPath). It is safe for concurrent use.
type Emulator struct {
	now func() time.Time
	mux *http.ServeMux

	mu              sync.Mutex
	clients         map[[2]string]string // tenant, client id → secret
	managedIdentity string               // client id of the managed identity; "" when off
	resources       map[string]Resource  // by lower-case id
	tokens          map[string]issued
	tokenTTL        time.Duration
	usage           map[Key]Event
	events          []Event
	faults          []Fault
	tokenFaults     []Fault
	calls           int
	tokenCalls      int
}

type issued struct {
	clientID string
	expires  time.Time
}

// New returns an Emulator that reads the time from now (time.Now when nil)
// and issues tokens valid for an hour.
func New(now func() time.Time) *Emulator {
	if now == nil {
		now = time.Now
	}
	e := &Emulator{
		now:       now,
		clients:   map[[2]string]string{},
		resources: map[string]Resource{},
		tokens:    map[string]issued{},
		tokenTTL:  time.Hour,
		usage:     map[Key]Event{},
	}
	e.mux = http.NewServeMux()
	e.mux.HandleFunc("POST /api/batchUsageEvent", e.batch)
	e.mux.HandleFunc("POST /{tenant}/oauth2/token", e.entraToken)
	e.mux.HandleFunc("GET "+ManagedIdentityPath, e.imdsToken)
	return e
}

// ServeHTTP serves the emulated endpoints.
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) { e.mux.ServeHTTP(w, r) }

// AddClient registers an Entra app's client credentials in a tenant.
func (e *Emulator) AddClient(tenantID, clientID, secret string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.clients[[2]string{tenantID, clientID}] = secret
}

// EnableManagedIdentity makes the managed identity endpoint issue tokens
// for the identity with client id clientID.
func (e *Emulator) EnableManagedIdentity(clientID string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.managedIdentity = clientID
}

// AddResource registers (or replaces) a resource.
func (e *Emulator) AddResource(r Resource) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.resources[strings.ToLower(r.ID)] = r
}

// SetTokenTTL sets how long tokens issued from now on are valid.
func (e *Emulator) SetTokenTTL(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.tokenTTL = d
}

// RevokeTokens makes every token issued so far invalid, as a rotated
// secret or a changed app registration would.
func (e *Emulator) RevokeTokens() {
	e.mu.Lock()
	defer e.mu.Unlock()
	clear(e.tokens)
}

// Inject queues faults for the next batch calls, one per call, in order.
func (e *Emulator) Inject(faults ...Fault) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.faults = append(e.faults, faults...)
}

// InjectToken queues faults for the next token calls (both endpoints).
// Only Status, RetryAfter and Delay apply.
func (e *Emulator) InjectToken(faults ...Fault) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.tokenFaults = append(e.tokenFaults, faults...)
}

// Usage returns the accepted quantity per resource, dimension and hour.
func (e *Emulator) Usage() map[Key]decimal.Decimal {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[Key]decimal.Decimal, len(e.usage))
	for k, ev := range e.usage {
		out[k] = ev.Quantity
	}
	return out
}

// Events returns every accepted event in the order accepted.
func (e *Emulator) Events() []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Event(nil), e.events...)
}

// Calls returns how many batch calls the emulator received, faulted ones
// included.
func (e *Emulator) Calls() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.calls
}

// TokenCalls returns how many token calls the emulator received, on both
// endpoints.
func (e *Emulator) TokenCalls() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.tokenCalls
}

func (e *Emulator) nextFault(queue *[]Fault) Fault {
	if len(*queue) == 0 {
		return Fault{}
	}
	f := (*queue)[0]
	*queue = (*queue)[1:]
	return f
}

// applyFault answers with the fault's status or holds the call back; it
// reports whether the call goes on.
func applyFault(w http.ResponseWriter, r *http.Request, f Fault) bool {
	if f.Delay > 0 && !wait(r.Context(), f.Delay) {
		return false
	}
	if f.Status != 0 {
		if f.RetryAfter > 0 {
			w.Header().Set("Retry-After", fmt.Sprint(int64((f.RetryAfter+time.Second-1)/time.Second)))
		}
		code := strings.ReplaceAll(http.StatusText(f.Status), " ", "")
		if f.Status == http.StatusBadRequest {
			code = "BadArgument"
		}
		writeJSON(w, f.Status, apiError{Code: code, Message: "injected fault"})
		return false
	}
	return true
}

func wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// apiError is the metering service's error body.
type apiError struct {
	Code           string          `json:"code"`
	Message        string          `json:"message"`
	Target         string          `json:"target,omitempty"`
	Details        []apiError      `json:"details,omitempty"`
	AdditionalInfo *additionalInfo `json:"additionalInfo,omitempty"`
}

type additionalInfo struct {
	AcceptedMessage *eventResult `json:"acceptedMessage,omitempty"`
}

// usageEvent is an event as sent; quantity and times are kept as sent so
// that results echo them.
type usageEvent struct {
	ResourceID         string          `json:"resourceId,omitempty"`
	ResourceURI        string          `json:"resourceUri,omitempty"`
	Quantity           json.RawMessage `json:"quantity,omitempty"`
	Dimension          string          `json:"dimension"`
	EffectiveStartTime string          `json:"effectiveStartTime"`
	PlanID             string          `json:"planId"`
}

type eventResult struct {
	UsageEventID string    `json:"usageEventId,omitempty"`
	Status       string    `json:"status"`
	MessageTime  string    `json:"messageTime"`
	Error        *apiError `json:"error,omitempty"`
	usageEvent
}

func (e *Emulator) batch(w http.ResponseWriter, r *http.Request) {
	for _, h := range []string{"x-ms-requestid", "x-ms-correlationid"} {
		w.Header().Set(h, cmp.Or(r.Header.Get(h), newGUID()))
	}
	// Reading the body first lets the server notice a client that gives
	// up during a delay.
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	e.mu.Lock()
	e.calls++
	f := e.nextFault(&e.faults)
	e.mu.Unlock()
	if !applyFault(w, r, f) {
		return
	}
	if err != nil {
		writeJSON(w, http.StatusRequestEntityTooLarge, apiError{Code: "RequestEntityTooLarge", Message: "The request body is too large."})
		return
	}

	clientID, ok := e.authorize(r)
	if !ok {
		writeJSON(w, http.StatusForbidden, apiError{Code: "Forbidden", Message: "The authorization token isn't provided, is invalid or expired."})
		return
	}
	if v := r.URL.Query().Get("api-version"); v != APIVersion {
		writeJSON(w, http.StatusBadRequest, apiError{Code: "BadArgument", Message: fmt.Sprintf("Unsupported api-version %q.", v)})
		return
	}
	var req struct {
		Request []usageEvent `json:"request"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{Code: "BadArgument", Message: "The request body is not a valid batch usage event: " + err.Error()})
		return
	}
	switch {
	case len(req.Request) == 0:
		writeJSON(w, http.StatusBadRequest, apiError{Code: "BadArgument", Message: "The batch contains no usage events."})
		return
	case len(req.Request) > MaxBatch:
		writeJSON(w, http.StatusBadRequest, apiError{Code: "BadArgument", Message: fmt.Sprintf("The batch contained more than %d usage events.", MaxBatch)})
		return
	}

	results := make([]eventResult, len(req.Request))
	e.mu.Lock()
	for i, ev := range req.Request {
		results[i] = e.process(clientID, ev)
	}
	e.mu.Unlock()

	if f.Drop {
		hj, ok := w.(http.Hijacker)
		if !ok {
			panic("azuretest: the server cannot drop connections")
		}
		conn, _, err := hj.Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	if f.DelayAfterAccept > 0 && !wait(r.Context(), f.DelayAfterAccept) {
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Count  int           `json:"count"`
		Result []eventResult `json:"result"`
	}{len(results), results})
}

// process applies the rules to one event; e.mu is held.
func (e *Emulator) process(clientID string, ev usageEvent) eventResult {
	now := e.now().UTC()
	res := eventResult{MessageTime: "0001-01-01T00:00:00", usageEvent: ev}
	fail := func(status, msg string) eventResult {
		res.Status = status
		res.Error = &apiError{Code: status, Message: msg}
		return res
	}
	id := cmp.Or(ev.ResourceID, ev.ResourceURI)
	switch {
	case ev.ResourceID == "" && ev.ResourceURI == "":
		return fail("BadArgument", "The resourceId or resourceUri is required.")
	case ev.ResourceID != "" && ev.ResourceURI != "":
		return fail("BadArgument", "Only one of resourceId and resourceUri may be given.")
	case ev.Dimension == "":
		return fail("BadArgument", "The dimension is required.")
	case ev.PlanID == "":
		return fail("BadArgument", "The planId is required.")
	}
	t, ok := parseTime(ev.EffectiveStartTime)
	if !ok {
		return fail("BadArgument", "The effectiveStartTime is missing or not a date and time.")
	}
	// Azure takes the quantity as a JSON number (a double), not a string.
	var num json.Number
	if len(ev.Quantity) == 0 || ev.Quantity[0] == '"' || json.Unmarshal(ev.Quantity, &num) != nil {
		return fail("BadArgument", "The quantity is missing or not a number.")
	}
	q, err := decimal.NewFromString(num.String())
	if err != nil {
		return fail("BadArgument", "The quantity is missing or not a number.")
	}
	if !q.IsPositive() {
		return fail("InvalidQuantity", "The quantity must be greater than 0.")
	}
	if t.After(now) {
		return fail("BadArgument", "The effectiveStartTime is in the future.")
	}
	if t.Before(now.Add(-Window)) {
		return fail("Expired", "The effectiveStartTime is more than 24 hours in the past.")
	}
	rsc, ok := e.resources[strings.ToLower(id)]
	switch {
	case !ok:
		return fail("ResourceNotFound", "The resource was not found.")
	case rsc.Owner != "" && rsc.Owner != clientID:
		return fail("ResourceNotAuthorized", "You are not authorized to provide usage for this resource.")
	case rsc.Inactive:
		return fail("ResourceNotActive", "The resource is suspended or was never activated.")
	case ev.PlanID != rsc.PlanID:
		return fail("BadArgument", fmt.Sprintf("The planId %q is not the resource's plan.", ev.PlanID))
	}
	known := false
	for _, d := range rsc.Dimensions {
		known = known || d == ev.Dimension
	}
	if !known {
		return fail("InvalidDimension", fmt.Sprintf("The dimension %q is not part of the plan.", ev.Dimension))
	}

	key := Key{Resource: rsc.ID, Dimension: ev.Dimension, Hour: t.Truncate(time.Hour)}
	if prev, dup := e.usage[key]; dup {
		res.Status = "Duplicate"
		accepted := prev.result()
		accepted.Status = "Duplicate"
		res.Error = &apiError{Code: "Conflict", Message: "This usage event already exist.", AdditionalInfo: &additionalInfo{AcceptedMessage: &accepted}}
		return res
	}
	accepted := Event{Key: key, UsageEventID: newGUID(), Quantity: q, Accepted: now, sent: ev}
	e.usage[key] = accepted
	e.events = append(e.events, accepted)
	return accepted.result()
}

func (ev Event) result() eventResult {
	return eventResult{
		UsageEventID: ev.UsageEventID,
		Status:       "Accepted",
		MessageTime:  ev.Accepted.Format(time.RFC3339Nano),
		usageEvent:   ev.sent,
	}
}

// authorize checks the bearer token and returns the client id it was
// issued to.
func (e *Emulator) authorize(r *http.Request) (string, bool) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		return "", false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	is, ok := e.tokens[tok]
	if !ok || !e.now().Before(is.expires) {
		return "", false
	}
	return is.clientID, true
}

// tokenError is the OAuth error body of both token endpoints.
type tokenError struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

func (e *Emulator) entraToken(w http.ResponseWriter, r *http.Request) {
	formErr := r.ParseForm()
	if !e.tokenCall(w, r) {
		return
	}
	if formErr != nil {
		writeJSON(w, http.StatusBadRequest, tokenError{"invalid_request", "AADSTS900144: The request body must be form encoded."})
		return
	}
	tenant := r.PathValue("tenant")
	switch {
	case r.PostForm.Get("grant_type") != "client_credentials":
		writeJSON(w, http.StatusBadRequest, tokenError{"unsupported_grant_type", "AADSTS70003: The app requested an unsupported grant type."})
		return
	case r.PostForm.Get("resource") != MeteringResource:
		writeJSON(w, http.StatusBadRequest, tokenError{"invalid_resource", "AADSTS500011: The resource principal was not found in the tenant."})
		return
	}
	clientID := r.PostForm.Get("client_id")
	e.mu.Lock()
	secret, ok := e.clients[[2]string{tenant, clientID}]
	e.mu.Unlock()
	switch {
	case !ok:
		writeJSON(w, http.StatusBadRequest, tokenError{"unauthorized_client", "AADSTS700016: Application not found in the directory."})
		return
	case r.PostForm.Get("client_secret") != secret:
		writeJSON(w, http.StatusUnauthorized, tokenError{"invalid_client", "AADSTS7000215: Invalid client secret provided."})
		return
	}
	e.issue(w, clientID)
}

func (e *Emulator) imdsToken(w http.ResponseWriter, r *http.Request) {
	if !e.tokenCall(w, r) {
		return
	}
	q := r.URL.Query()
	e.mu.Lock()
	identity := e.managedIdentity
	e.mu.Unlock()
	switch {
	case r.Header.Get("Metadata") != "true":
		writeJSON(w, http.StatusBadRequest, tokenError{"invalid_request", "Required metadata header not specified"})
	case q.Get("api-version") == "":
		writeJSON(w, http.StatusBadRequest, tokenError{"invalid_request", "Required query variable 'api-version' is missing"})
	case q.Get("resource") != MeteringResource:
		writeJSON(w, http.StatusBadRequest, tokenError{"invalid_resource", "The resource is not the metering service."})
	case identity == "" || q.Get("client_id") != "" && q.Get("client_id") != identity:
		writeJSON(w, http.StatusBadRequest, tokenError{"invalid_request", "Identity not found"})
	default:
		e.issue(w, identity)
	}
}

func (e *Emulator) tokenCall(w http.ResponseWriter, r *http.Request) bool {
	e.mu.Lock()
	e.tokenCalls++
	f := e.nextFault(&e.tokenFaults)
	e.mu.Unlock()
	return applyFault(w, r, f)
}

func (e *Emulator) issue(w http.ResponseWriter, clientID string) {
	tok := rand.Text()
	e.mu.Lock()
	now := e.now()
	ttl := e.tokenTTL
	e.tokens[tok] = issued{clientID: clientID, expires: now.Add(ttl)}
	e.mu.Unlock()
	secs := int64(ttl / time.Second)
	// Both endpoints send the numbers as strings.
	writeJSON(w, http.StatusOK, map[string]string{
		"token_type":     "Bearer",
		"expires_in":     fmt.Sprint(secs),
		"ext_expires_in": "0",
		"expires_on":     fmt.Sprint(now.Unix() + secs),
		"not_before":     fmt.Sprint(now.Unix()),
		"resource":       MeteringResource,
		"access_token":   tok,
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// parseTime reads an ISO 8601 date and time, UTC when it has no zone.
func parseTime(s string) (time.Time, bool) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), true
	}
	for _, layout := range []string{"2006-01-02T15:04:05.999999999", "2006-01-02T15:04"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

func newGUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
