package httpapi_test

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestAPICorrectionsListedAndPreviewed checks that the event listing shows
// a void, an amendment and the rule that cancels an event, that a dry run
// stores nothing and says what would change, and the answers to mistakes.
func TestAPICorrectionsListedAndPreviewed(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{})
	h.createMeter(`{"slug":"calls","eventType":"call","aggregation":"SUM","valueProperty":"$.n"}`)
	ts := apiStart.Add(-10 * time.Minute).Format(time.RFC3339)
	h.ingest(batchCT, jsonArray(
		ce("a", "call", "sub-1", ts, `{"n":1}`),
		ce("b", "call", "sub-1", ts, `{"n":2}`),
		ce("c", "call", "sub-2", ts, `{"n":4}`),
	))
	r := h.do("POST", "/api/v1/events/void", "application/json", `{"source":"test","id":"a","subject":"sub-1","reason":"test traffic"}`)
	h.expect(r, http.StatusOK, "void")
	r = h.do("POST", "/api/v1/events/amend", "application/json", `{"source":"test","id":"b","subject":"sub-1","data":{"n":20},"reason":"wrong count"}`)
	h.expect(r, http.StatusOK, "amend")
	if got := h.total("calls"); got != "24" {
		t.Errorf("total after void and amend: %s, want 24", got)
	}
	// Mistakes name what is wrong.
	r = h.do("POST", "/api/v1/events/void", "application/json", `{"source":"test","id":"zz","subject":"sub-1","reason":"x"}`)
	if p := problemOf(t, r, http.StatusNotFound); !strings.Contains(p.Detail, `"zz"`) {
		t.Errorf("void of a missing event: %s", p.Detail)
	}
	r = h.do("POST", "/api/v1/events/void", "application/json", `{"source":"test","id":"a","subject":"sub-1","reason":"again"}`)
	if p := problemOf(t, r, http.StatusConflict); !strings.Contains(p.Detail, "test traffic") {
		t.Errorf("second void: %s", p.Detail)
	}
	r = h.do("POST", "/api/v1/events/amend", "application/json", `{"source":"test","id":"b","subject":"sub-1","reason":""}`)
	if p := problemOf(t, r, http.StatusBadRequest); !strings.Contains(p.Detail, "data: required") || !strings.Contains(p.Detail, "reason: required") {
		t.Errorf("amend without data and reason: %s", p.Detail)
	}
	// A dry run stores nothing.
	r = h.do("POST", "/api/v1/cancellation-rules", "application/json", `{"meter":"calls","subjects":["sub-2"],"reason":"dup","dryRun":true}`)
	h.expect(r, http.StatusOK, "dry run")
	var pv struct {
		EventsMatched int `json:"eventsMatched"`
		Usage         []struct {
			Subject, Before, After, Change string
		} `json:"usage"`
	}
	decodeInto(t, r, &pv)
	if pv.EventsMatched != 1 || len(pv.Usage) != 1 || pv.Usage[0].Subject != "sub-2" || pv.Usage[0].Before != "4" || pv.Usage[0].After != "0" {
		t.Errorf("preview: %s", r.Body)
	}
	if got := h.total("calls"); got != "24" {
		t.Errorf("total after a dry run: %s, want 24", got)
	}
	r = h.do("GET", "/api/v1/cancellation-rules", "", "")
	h.expect(r, http.StatusOK, "list rules")
	if strings.TrimSpace(string(r.Body)) != `{"items":[]}` {
		t.Errorf("rules after a dry run: %s", r.Body)
	}
	r = h.do("POST", "/api/v1/cancellation-rules", "application/json", `{"meter":"calls","subjects":["sub-2"],"reason":"dup"}`)
	h.expect(r, http.StatusCreated, "create rule")
	if got := h.total("calls"); got != "20" {
		t.Errorf("total with the rule: %s, want 20", got)
	}
	// The listing shows each correction.
	r = h.do("GET", "/api/v1/events", "", "")
	h.expect(r, http.StatusOK, "list events")
	body := string(r.Body)
	for _, want := range []string{`"voided":true`, `"reason":"test traffic"`, `"kind":"amend"`, `"data":{"n":20}`, `"cancelledBy":[{"rule":`, `"meters":["calls"]`} {
		if !strings.Contains(body, want) {
			t.Errorf("event listing lacks %s: %s", want, body)
		}
	}
	// Rules need a selector and a reason.
	r = h.do("POST", "/api/v1/cancellation-rules", "application/json", `{"reason":""}`)
	if p := problemOf(t, r, http.StatusBadRequest); !strings.Contains(p.Detail, "reason: required") || !strings.Contains(p.Detail, "every event of every meter") {
		t.Errorf("empty rule: %s", p.Detail)
	}
	h.verify()
}
