package httpapi

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestWriteJSONEncodingError checks that a value that can't be encoded is a
// logged 500 problem, not the status asked for with an empty body (a time
// in year 10000 once made key listings answer an empty 200).
func TestWriteJSONEncodingError(t *testing.T) {
	var logged bytes.Buffer
	s := &Server{log: slog.New(slog.NewTextHandler(&logged, nil))}
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "/api/v1/keys", nil)
	w.Header().Set("Location", "/api/v1/keys/k1")
	s.writeJSON(w, r, http.StatusCreated, map[string]time.Time{"expiresAt": time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)})
	if w.Code != http.StatusInternalServerError {
		t.Errorf("status %d, want 500", w.Code)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type %q, want application/problem+json", ct)
	}
	if loc := w.Header().Get("Location"); loc != "" {
		t.Errorf("Location %q kept on a failed response", loc)
	}
	var p Problem
	if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || p.Status != http.StatusInternalServerError {
		t.Errorf("body %q is not a 500 problem: %v", w.Body, err)
	}
	if !strings.Contains(logged.String(), "encode response") || !strings.Contains(logged.String(), "year outside of range") {
		t.Errorf("log %q does not record the encoding error", logged.String())
	}

	w = httptest.NewRecorder()
	s.writeJSON(w, r, http.StatusOK, map[string]int{"a": 1})
	if w.Code != http.StatusOK || w.Body.String() != "{\"a\":1}\n" || w.Header().Get("Content-Type") != "application/json" {
		t.Errorf("got %d %q %q, want 200 {\"a\":1}", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
}
