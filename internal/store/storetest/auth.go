package storetest

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tally-metering/tally/internal/store"
)

func testAPIKeys(t *testing.T, b Backend) {
	e := newEnv(t, b)
	ctx := ctxOf(t)
	exp := bt0.Add(24 * time.Hour)
	keys := []store.APIKey{
		{ID: "key_1", Name: "ops", Prefix: "tly_aaaa", Hash: "h1", Scope: "admin", CreatedBy: "admin-token", CreatedAt: bt0},
		{ID: "key_2", Prefix: "tly_bbbb", Hash: "h2", Scope: "ingest", CustomerID: "c-1", Subject: "contoso-eu-1", CreatedAt: bt0.Add(time.Second), ExpiresAt: &exp},
	}
	for _, k := range keys {
		if err := e.s.CreateAPIKey(ctx, k); err != nil {
			t.Fatalf("CreateAPIKey(%s): %v", k.ID, err)
		}
	}
	if err := e.s.CreateAPIKey(ctx, store.APIKey{ID: "key_3", Hash: "h1", Scope: "read", CreatedAt: bt0}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateAPIKey with a taken hash: %v, want ErrConflict", err)
	}
	if err := e.s.CreateAPIKey(ctx, store.APIKey{ID: "key_1", Hash: "h9", Scope: "read", CreatedAt: bt0}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateAPIKey with a taken id: %v, want ErrConflict", err)
	}
	e.stages(t, func(t *testing.T) {
		got, err := e.s.ListAPIKeys(ctx)
		if err != nil {
			t.Fatalf("ListAPIKeys: %v", err)
		}
		if diff := cmp.Diff(keys, got); diff != "" {
			t.Errorf("ListAPIKeys (-want +got):\n%s", diff)
		}
		k, err := e.s.APIKeyByHash(ctx, "h2")
		if err != nil || k.ID != "key_2" {
			t.Errorf("APIKeyByHash(h2) = %+v, %v; want key_2", k, err)
		}
		if _, err := e.s.APIKeyByHash(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("APIKeyByHash(unknown): %v, want ErrNotFound", err)
		}
		if _, err := e.s.GetAPIKey(ctx, "key_9"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetAPIKey(unknown): %v, want ErrNotFound", err)
		}
	})

	used := bt0.Add(time.Hour)
	if err := e.s.TouchAPIKey(ctx, "key_2", used); err != nil {
		t.Fatalf("TouchAPIKey: %v", err)
	}
	if err := e.s.TouchAPIKey(ctx, "key_2", used.Add(-time.Minute)); err != nil {
		t.Fatalf("TouchAPIKey (earlier): %v", err)
	}
	if err := e.s.TouchAPIKey(ctx, "key_9", used); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("TouchAPIKey(unknown): %v, want ErrNotFound", err)
	}
	revoked := bt0.Add(2 * time.Hour)
	k, err := e.s.RevokeAPIKey(ctx, "key_2", revoked)
	if err != nil || k.RevokedAt == nil || !k.RevokedAt.Equal(revoked) {
		t.Fatalf("RevokeAPIKey = %+v, %v", k, err)
	}
	if k, err := e.s.RevokeAPIKey(ctx, "key_2", revoked.Add(time.Hour)); err != nil || !k.RevokedAt.Equal(revoked) {
		t.Errorf("revoking again = %+v, %v; want the first revocation time kept", k, err)
	}
	if _, err := e.s.RevokeAPIKey(ctx, "key_9", revoked); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RevokeAPIKey(unknown): %v, want ErrNotFound", err)
	}
	e.stages(t, func(t *testing.T) {
		k, err := e.s.GetAPIKey(ctx, "key_2")
		if err != nil {
			t.Fatalf("GetAPIKey: %v", err)
		}
		if k.LastUsedAt == nil || !k.LastUsedAt.Equal(used) {
			t.Errorf("LastUsedAt = %v, want %v (the latest touch)", k.LastUsedAt, used)
		}
		if k.RevokedAt == nil || !k.RevokedAt.Equal(revoked) {
			t.Errorf("RevokedAt = %v, want %v", k.RevokedAt, revoked)
		}
		if k.Hash != "h2" || k.CustomerID != "c-1" || k.Subject != "contoso-eu-1" || k.ExpiresAt == nil || !k.ExpiresAt.Equal(exp) {
			t.Errorf("GetAPIKey = %+v; fields were not kept", k)
		}
	})
}

func testAudit(t *testing.T, b Backend) {
	e := newEnv(t, b)
	ctx := ctxOf(t)
	entries := []store.AuditEntry{
		{At: bt0, Actor: "admin-token", Method: "POST", Route: "/api/v1/customers", Path: "/api/v1/customers", Target: "c-1", Status: 201, Body: json.RawMessage(`{"key":"contoso"}`)},
		{At: bt0.Add(time.Minute), Actor: "key_1", Method: "DELETE", Route: "/api/v1/keys/{id}", Path: "/api/v1/keys/key_2", Target: "key_2", Status: 200},
		{At: bt0.Add(2 * time.Minute), Actor: "key_1", Method: "PUT", Route: "/api/v1/customers/{idOrKey}", Path: "/api/v1/customers/c-1", Target: "c-1", Status: 200, Body: json.RawMessage(`{"name":"C"}`)},
	}
	var last int64
	for i := range entries {
		seq, err := e.s.AppendAudit(ctx, entries[i])
		if err != nil {
			t.Fatalf("AppendAudit: %v", err)
		}
		if seq <= last {
			t.Fatalf("AppendAudit returned seq %d after %d; want increasing", seq, last)
		}
		last = seq
		entries[i].Seq = seq
	}
	rev := func(idx ...int) []store.AuditEntry {
		var out []store.AuditEntry
		for _, i := range idx {
			out = append(out, entries[i])
		}
		return out
	}
	e.stages(t, func(t *testing.T) {
		for _, tc := range []struct {
			name string
			f    store.AuditFilter
			want []store.AuditEntry
		}{
			{"all, newest first", store.AuditFilter{}, rev(2, 1, 0)},
			{"actor", store.AuditFilter{Actor: "key_1"}, rev(2, 1)},
			{"target", store.AuditFilter{Target: "c-1"}, rev(2, 0)},
			{"time range", store.AuditFilter{From: bt0.Add(time.Minute), To: bt0.Add(2 * time.Minute)}, rev(1)},
			{"before and limit", store.AuditFilter{Before: entries[2].Seq, Limit: 1}, rev(1)},
		} {
			got, err := e.s.ListAudit(ctx, tc.f)
			if err != nil {
				t.Fatalf("ListAudit(%s): %v", tc.name, err)
			}
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(sameJSON)); diff != "" {
				t.Errorf("ListAudit(%s) (-want +got):\n%s", tc.name, diff)
			}
		}
	})
}

func testPortalTokens(t *testing.T, b Backend) {
	e := newEnv(t, b)
	ctx := ctxOf(t)
	toks := []store.PortalToken{
		{ID: "ptk_1", CustomerID: "c-1", Meters: []string{"emails", "sms"}, CreatedBy: "admin-token", CreatedAt: bt0, ExpiresAt: bt0.Add(time.Hour)},
		{ID: "ptk_2", CustomerID: "c-1", Subject: "contoso-eu-1", CreatedAt: bt0.Add(time.Second), ExpiresAt: bt0.Add(2 * time.Hour)},
		{ID: "ptk_3", CustomerID: "c-2", CreatedAt: bt0.Add(2 * time.Second), ExpiresAt: bt0.Add(3 * time.Hour)},
		{ID: "ptk_4", CustomerID: "c-1", CreatedAt: bt0.Add(3 * time.Second), ExpiresAt: bt0.Add(time.Minute)},
	}
	for _, tok := range toks {
		if err := e.s.CreatePortalToken(ctx, tok); err != nil {
			t.Fatalf("CreatePortalToken(%s): %v", tok.ID, err)
		}
	}
	if err := e.s.CreatePortalToken(ctx, toks[0]); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreatePortalToken with a taken id: %v, want ErrConflict", err)
	}
	if _, err := e.s.GetPortalToken(ctx, "ptk_9"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetPortalToken(unknown): %v, want ErrNotFound", err)
	}
	if _, err := e.s.RevokePortalToken(ctx, "ptk_9", bt0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RevokePortalToken(unknown): %v, want ErrNotFound", err)
	}
	revoked := bt0.Add(10 * time.Minute)
	got, err := e.s.RevokePortalToken(ctx, "ptk_1", revoked)
	if err != nil || got.RevokedAt == nil || !got.RevokedAt.Equal(revoked) {
		t.Fatalf("RevokePortalToken = %+v, %v", got, err)
	}
	if got, err := e.s.RevokePortalToken(ctx, "ptk_1", revoked.Add(time.Minute)); err != nil || !got.RevokedAt.Equal(revoked) {
		t.Errorf("revoking again = %+v, %v; want the first revocation time kept", got, err)
	}
	// Customer c-1 at revoked: ptk_1 is revoked already and ptk_4
	// expired, so only ptk_2 is revoked now.
	all := revoked.Add(time.Minute)
	rs, err := e.s.RevokeCustomerPortalTokens(ctx, "c-1", all)
	if err != nil {
		t.Fatalf("RevokeCustomerPortalTokens: %v", err)
	}
	if len(rs) != 1 || rs[0].ID != "ptk_2" || rs[0].RevokedAt == nil || !rs[0].RevokedAt.Equal(all) {
		t.Errorf("RevokeCustomerPortalTokens = %+v; want ptk_2 revoked at %v", rs, all)
	}
	ids := func(ts []store.PortalToken) []string {
		out := []string{}
		for _, tok := range ts {
			out = append(out, tok.ID)
		}
		return out
	}
	e.stages(t, func(t *testing.T) {
		tok, err := e.s.GetPortalToken(ctx, "ptk_1")
		if err != nil {
			t.Fatalf("GetPortalToken: %v", err)
		}
		want := toks[0]
		want.RevokedAt = &revoked
		if diff := cmp.Diff(want, tok); diff != "" {
			t.Errorf("GetPortalToken (-want +got):\n%s", diff)
		}
		if tok, err := e.s.GetPortalToken(ctx, "ptk_2"); err != nil || tok.Meters != nil || tok.Subject != "contoso-eu-1" {
			t.Errorf("GetPortalToken(ptk_2) = %+v, %v; want no meter list (every meter) and its subject", tok, err)
		}
		for _, tc := range []struct {
			name string
			f    store.PortalTokenFilter
			want []string
		}{
			{"all", store.PortalTokenFilter{}, []string{"ptk_1", "ptk_2", "ptk_3", "ptk_4"}},
			{"customer", store.PortalTokenFilter{CustomerID: "c-2"}, []string{"ptk_3"}},
			{"unexpired", store.PortalTokenFilter{ExpiresAfter: bt0.Add(time.Hour)}, []string{"ptk_2", "ptk_3"}},
			{"revoked", store.PortalTokenFilter{Revoked: true}, []string{"ptk_1", "ptk_2"}},
			{"revoked unexpired", store.PortalTokenFilter{Revoked: true, ExpiresAfter: bt0.Add(time.Hour)}, []string{"ptk_2"}},
		} {
			got, err := e.s.ListPortalTokens(ctx, tc.f)
			if err != nil {
				t.Fatalf("ListPortalTokens(%s): %v", tc.name, err)
			}
			if diff := cmp.Diff(tc.want, ids(got)); diff != "" {
				t.Errorf("ListPortalTokens(%s) (-want +got):\n%s", tc.name, diff)
			}
		}
	})
	n, err := e.s.DeleteExpiredPortalTokens(ctx, bt0.Add(time.Hour))
	if err != nil || n != 2 {
		t.Errorf("DeleteExpiredPortalTokens = %d, %v; want 2 (ptk_4 and ptk_1, which expire by then)", n, err)
	}
	left, err := e.s.ListPortalTokens(ctx, store.PortalTokenFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"ptk_2", "ptk_3"}, ids(left)); diff != "" {
		t.Errorf("after DeleteExpiredPortalTokens (-want +got):\n%s", diff)
	}
}
