package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tally-metering/tally/internal/billing"
	"github.com/tally-metering/tally/internal/event"
)

// importClient is tally import's side of a running server's API.
type importClient struct {
	base, token string
	http        *http.Client
	// retries is how often a request the server could not take (a
	// network error, 429, 5xx) is tried again before the import stops.
	retries int
	// backoff is the first wait before a retry; it doubles each time.
	backoff time.Duration
}

// apiError is a request the server refused: a problem+json answer.
type apiError struct {
	Status   int
	Detail   string
	Errors   []string
	Problems []event.Problem
}

func (e *apiError) Error() string {
	var parts []string
	for _, p := range e.Problems {
		p.Index = -1
		parts = append(parts, p.String())
	}
	parts = append(parts, e.Errors...)
	if len(parts) == 0 {
		if e.Detail != "" {
			return fmt.Sprintf("%s (%d)", e.Detail, e.Status)
		}
		return fmt.Sprintf("the server answered %d %s", e.Status, http.StatusText(e.Status))
	}
	return strings.Join(parts, "; ")
}

// stopError is an error that stops the import, rather than failing one
// line: the server can't be reached or won't take requests at all (a bad
// credential, an error of its own), or the import was interrupted.
type stopError struct{ err error }

func (e *stopError) Error() string { return e.err.Error() }
func (e *stopError) Unwrap() error { return e.err }

// fatal reports whether err stops the import.
func fatal(err error) bool {
	var se *stopError
	return errors.As(err, &se)
}

// stops wraps an answer that no other line would get past.
func stops(err error) error {
	var ae *apiError
	if errors.As(err, &ae) && (ae.Status == http.StatusUnauthorized || ae.Status == http.StatusForbidden ||
		ae.Status == http.StatusTooManyRequests || ae.Status >= 500) {
		return &stopError{fmt.Errorf("the server refuses: %w", err)}
	}
	return err
}

// retryable reports whether a status may pass on its own.
func retryable(status int) bool {
	return status == http.StatusTooManyRequests || status == http.StatusBadGateway ||
		status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout || status == http.StatusInternalServerError
}

// do sends a request, retrying what may pass, and decodes a success into
// out (when not nil).
func (c *importClient) do(ctx context.Context, method, path, contentType string, body []byte, out any) error {
	wait := c.backoff
	for attempt := 0; ; attempt++ {
		status, answer, retryAfter, err := c.once(ctx, method, path, contentType, body)
		switch {
		case ctx.Err() != nil:
			return &stopError{ctx.Err()}
		case err == nil && status < 300:
			if out == nil || len(answer) == 0 {
				return nil
			}
			if err := json.Unmarshal(answer, out); err != nil {
				return &stopError{fmt.Errorf("%s %s: decode answer: %w", method, path, err)}
			}
			return nil
		case err == nil && !retryable(status):
			return stops(problemOf(status, answer))
		case attempt >= c.retries:
			if err != nil {
				return &stopError{fmt.Errorf("%s %s: %w", method, path, err)}
			}
			return stops(problemOf(status, answer))
		}
		d := wait
		if retryAfter > d {
			d = min(retryAfter, time.Minute)
		}
		select {
		case <-ctx.Done():
			return &stopError{ctx.Err()}
		case <-time.After(d):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

func (c *importClient) once(ctx context.Context, method, path, contentType string, body []byte) (int, []byte, time.Duration, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, nil, 0, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, 0, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return 0, nil, 0, err
	}
	var ra time.Duration
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		ra = time.Duration(s) * time.Second
	}
	return resp.StatusCode, answer, ra, nil
}

func problemOf(status int, body []byte) error {
	e := &apiError{Status: status}
	_ = json.Unmarshal(body, e)
	var p struct {
		Detail string `json:"detail"`
	}
	if json.Unmarshal(body, &p) != nil || p.Detail == "" {
		e.Detail = strings.TrimSpace(string(body))
		if len(e.Detail) > 200 {
			e.Detail = e.Detail[:200] + "…"
		}
	}
	return e
}

// importOutcome is what became of one customer or subscription line.
type importOutcome int

const (
	outcomeCreated importOutcome = iota
	outcomeUnchanged
)

// differsError is an item that exists already, unlike the line: the
// import leaves it as it is.
type differsError struct {
	what   string
	fields []string
	hint   string
}

func (e *differsError) Error() string {
	return fmt.Sprintf("%s exists and differs from this line in %s; left as it is (%s)", e.what, strings.Join(e.fields, ", "), e.hint)
}

// ensureCustomer creates the customer in unless one with its key exists:
// then it compares them.
func (c *importClient) ensureCustomer(ctx context.Context, in billing.CustomerInput) (importOutcome, error) {
	path := "/api/v1/customers/" + url.PathEscape(in.Key)
	for tries := 0; ; tries++ {
		var have billing.Customer
		err := c.do(ctx, http.MethodGet, path, "", nil, &have)
		var ae *apiError
		switch {
		case errors.As(err, &ae) && ae.Status == http.StatusNotFound:
		case err != nil:
			return 0, err
		case have.DeletedAt != nil:
			return 0, fmt.Errorf("customer %q was deleted in tally at %s; not created again (create it by hand to bring it back)", in.Key, have.DeletedAt.UTC().Format(time.RFC3339))
		default:
			if diff := customerDiff(in, have); len(diff) > 0 {
				return 0, &differsError{what: fmt.Sprintf("customer %q", in.Key), fields: diff, hint: "change it with PUT " + path}
			}
			return outcomeUnchanged, nil
		}
		body, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		err = c.do(ctx, http.MethodPost, "/api/v1/customers", "application/json", body, nil)
		if errors.As(err, &ae) && ae.Status == http.StatusConflict && tries == 0 && strings.Contains(ae.Detail, in.Key) {
			// Created meanwhile (a retried request that had passed, or
			// another import): compare with it.
			continue
		}
		if err != nil {
			return 0, err
		}
		return outcomeCreated, nil
	}
}

// customerDiff names the fields in which the stored customer differs
// from the line.
func customerDiff(in billing.CustomerInput, have billing.Customer) []string {
	var diff []string
	if in.Name != have.Name {
		diff = append(diff, "name")
	}
	if in.Email != have.Email {
		diff = append(diff, "email")
	}
	if in.Currency != have.Currency {
		diff = append(diff, "currency")
	}
	if len(in.Metadata)+len(have.Metadata) > 0 && !maps.Equal(in.Metadata, have.Metadata) {
		diff = append(diff, "metadata")
	}
	want := slices.Sorted(slices.Values(in.Subjects))
	got := slices.Sorted(slices.Values(have.Subjects))
	if !slices.Equal(want, got) {
		diff = append(diff, "subjects")
	}
	a, _ := json.Marshal(in.External)
	b, _ := json.Marshal(have.External)
	if !bytes.Equal(a, b) {
		diff = append(diff, "external")
	}
	if in.CreatedAt != nil && !in.CreatedAt.Equal(have.CreatedAt) {
		diff = append(diff, fmt.Sprintf("createdAt (tally has %s)", have.CreatedAt.UTC().Format(time.RFC3339Nano)))
	}
	return diff
}

// ensureSubscription creates the subscription in unless the customer has
// one to the same plan from the same start: then it compares them.
func (c *importClient) ensureSubscription(ctx context.Context, in billing.SubscriptionInput) (importOutcome, error) {
	for tries := 0; ; tries++ {
		have, found, err := c.findSubscription(ctx, in)
		if err != nil {
			return 0, err
		}
		if found {
			var diff []string
			if in.PlanVersion != 0 && in.PlanVersion != have.PlanVersion {
				diff = append(diff, fmt.Sprintf("planVersion (tally has %d)", have.PlanVersion))
			}
			if in.BillingAnchor != "" && in.BillingAnchor != have.BillingAnchor {
				diff = append(diff, fmt.Sprintf("billingAnchor (tally has %s)", have.BillingAnchor))
			}
			if tz := cmp0(in.TimeZone, "UTC"); tz != have.TimeZone {
				diff = append(diff, fmt.Sprintf("timeZone (tally has %s)", have.TimeZone))
			}
			if len(diff) > 0 {
				return 0, &differsError{what: "subscription " + have.ID, fields: diff, hint: "cancel or change it through the API"}
			}
			return outcomeUnchanged, nil
		}
		body, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		err = c.do(ctx, http.MethodPost, "/api/v1/subscriptions", "application/json", body, nil)
		var ae *apiError
		if errors.As(err, &ae) && ae.Status == http.StatusConflict && tries == 0 {
			// Perhaps created meanwhile (a retried request that had
			// passed): look again; else the refusal stands.
			if _, found, ferr := c.findSubscription(ctx, in); ferr == nil && found {
				continue
			}
		}
		if err != nil {
			return 0, err
		}
		return outcomeCreated, nil
	}
}

func cmp0(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// findSubscription finds the customer's subscription that started on the
// plan at the start in names: an import's subscription key.
func (c *importClient) findSubscription(ctx context.Context, in billing.SubscriptionInput) (billing.Subscription, bool, error) {
	after := ""
	for {
		var list struct {
			Items     []billing.Subscription `json:"items"`
			NextAfter string                 `json:"nextAfter"`
		}
		path := "/api/v1/subscriptions?limit=1000&customer=" + url.QueryEscape(in.Customer)
		if after != "" {
			path += "&after=" + url.QueryEscape(after)
		}
		if err := c.do(ctx, http.MethodGet, path, "", nil, &list); err != nil {
			return billing.Subscription{}, false, err
		}
		for _, s := range list.Items {
			if (s.PlanKey == in.Plan || s.PlanID == in.Plan) && s.Start.Equal(*in.Start) {
				return s, true, nil
			}
		}
		if list.NextAfter == "" {
			return billing.Subscription{}, false, nil
		}
		after = list.NextAfter
	}
}

// sendEvents sends one batch of events (JSON objects).
func (c *importClient) sendEvents(ctx context.Context, events [][]byte) error {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, e := range events {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(e)
	}
	b.WriteByte(']')
	return c.do(ctx, http.MethodPost, "/api/v1/events", event.MediaTypeCloudEventBatch, b.Bytes(), nil)
}
