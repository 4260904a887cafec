package httpapi_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// apiVersioned is the part of a subscription that concurrency control
// reads.
type apiVersioned struct {
	ID      string         `json:"id"`
	Version int            `json:"version"`
	Status  string         `json:"status"`
	Phases  []apiPlanPhase `json:"phases"`
}

// raceResult is one response of raceRequests.
type raceResult struct {
	status int
	body   string
	etag   string
	err    error
}

// raceRequests sends the requests at once (each a method, path, body and
// If-Match header, "" for none) and returns their responses in order. It
// does not use the harness helpers, which may stop the test from another
// goroutine.
func raceRequests(h *apiHarness, reqs [][4]string) []raceResult {
	out := make([]raceResult, len(reqs))
	var ready, done sync.WaitGroup
	ready.Add(len(reqs))
	done.Add(len(reqs))
	start := make(chan struct{})
	for i, rq := range reqs {
		go func() {
			defer done.Done()
			req, err := http.NewRequest(rq[0], h.srv.URL+rq[1], strings.NewReader(rq[2]))
			ready.Done()
			if err != nil {
				out[i].err = err
				return
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+h.token)
			if rq[3] != "" {
				req.Header.Set("If-Match", rq[3])
			}
			<-start
			resp, err := h.srv.Client().Do(req)
			if err != nil {
				out[i].err = err
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			out[i] = raceResult{status: resp.StatusCode, body: string(b), etag: resp.Header.Get("ETag"), err: err}
		}()
	}
	ready.Wait()
	close(start)
	done.Wait()
	for i, r := range out {
		if r.err != nil {
			h.t.Fatalf("request %d (%s %s): %v", i, reqs[i][0], reqs[i][1], r.err)
		}
	}
	return out
}

func (h *apiHarness) subscription(id string) (apiVersioned, string) {
	h.t.Helper()
	r := h.do("GET", "/api/v1/subscriptions/"+id, "", "")
	h.expect(r, http.StatusOK, "get subscription")
	var v apiVersioned
	decodeInto(h.t, r, &v)
	return v, r.Header.Get("ETag")
}

// Concurrent subscriptions of one customer to one plan: exactly one is
// created, the others are refused (409), so its usage is billed once.
func TestConcurrentSubscriptionsToOnePlan(t *testing.T) {
	h := newChangeHarness(t)
	const n = 12
	var reqs [][4]string
	for range n {
		reqs = append(reqs, [4]string{"POST", "/api/v1/subscriptions", `{"customer":"contoso","plan":"mail-pro"}`, ""})
	}
	created := 0
	for i, r := range raceRequests(h, reqs) {
		switch {
		case r.status == http.StatusCreated:
			created++
		case r.status == http.StatusConflict && strings.Contains(r.body, `is already on plan \"mail-pro\"`):
		default:
			t.Errorf("request %d: %d %s; want 201 or 409 (already on the plan)", i, r.status, r.body)
		}
	}
	var list struct{ Items []apiVersioned }
	h.json("GET", "/api/v1/subscriptions?customer=contoso", "", http.StatusOK, &list)
	if created != 1 || len(list.Items) != 1 {
		t.Errorf("%d concurrent subscriptions: %d created, %d listed; want 1", n, created, len(list.Items))
	}
}

func TestSubscriptionETagAndIfMatch(t *testing.T) {
	h := newChangeHarness(t)
	r := h.do("POST", "/api/v1/subscriptions", "application/json", `{"customer":"contoso","plan":"mail-pro"}`)
	h.expect(r, http.StatusCreated, "subscribe")
	var sub apiVersioned
	decodeInto(t, r, &sub)
	if sub.Version != 1 || r.Header.Get("ETag") != `"1"` {
		t.Fatalf("created: version %d, ETag %q; want 1, \"1\"", sub.Version, r.Header.Get("ETag"))
	}
	path := "/api/v1/subscriptions/" + sub.ID
	if got, etag := h.subscription(sub.ID); got.Version != 1 || etag != `"1"` {
		t.Fatalf("GET: version %d, ETag %q; want 1, \"1\"", got.Version, etag)
	}

	// A change based on the current version.
	const toTeam = `{"plan":"mail-team","at":"period_end"}`
	r = h.do("POST", path+"/change", "application/json", toTeam, "If-Match", `"1"`)
	h.expect(r, http.StatusOK, "change with a current If-Match")
	decodeInto(t, r, &sub)
	if sub.Version != 2 || r.Header.Get("ETag") != `"2"` || len(sub.Phases) != 1 {
		t.Fatalf("changed: %+v, ETag %q; want version 2, \"2\", one phase", sub, r.Header.Get("ETag"))
	}

	// One based on version 1 is refused (412) and changes nothing.
	p := problemOf(t, h.do("POST", path+"/cancel", "application/json", `{"at":"now"}`, "If-Match", `"1"`), http.StatusPreconditionFailed)
	if !strings.Contains(p.Detail, "version 2") || !strings.Contains(p.Detail, `"1"`) {
		t.Errorf("stale If-Match: detail %q", p.Detail)
	}
	r = h.do("POST", path+"/change", "application/json", `{"plan":"mail-pro","at":"period_end"}`, "If-Match", `"1", "0"`)
	if problemOf(t, r, http.StatusPreconditionFailed); r.Header.Get("ETag") != `"2"` {
		t.Errorf("412 ETag %q, want the current \"2\"", r.Header.Get("ETag"))
	}
	// If-Match compares strongly: a weak tag never matches.
	problemOf(t, h.do("POST", path+"/cancel", "application/json", `{"at":"now"}`, "If-Match", `W/"2"`), http.StatusPreconditionFailed)
	if got, _ := h.subscription(sub.ID); got.Version != 2 || got.Status != "active" || len(got.Phases) != 1 || got.Phases[0].PlanKey != "mail-team" {
		t.Fatalf("after refused changes: %+v; want version 2, active, changing to mail-team", got)
	}
	p = problemOf(t, h.do("POST", path+"/cancel", "application/json", `{"at":"now"}`, "If-Match", `2`), http.StatusBadRequest)
	if !strings.HasPrefix(p.Detail, "If-Match: ") {
		t.Errorf("unquoted If-Match: detail %q", p.Detail)
	}
	// The precondition is checked after the request itself: a bad body is
	// a 400, an unknown subscription a 404, whatever If-Match says.
	problemOf(t, h.do("POST", path+"/cancel", "application/json", `{"at":"later"}`, "If-Match", `"1"`), http.StatusBadRequest)
	problemOf(t, h.do("POST", "/api/v1/subscriptions/nope/cancel", "application/json", `{"at":"now"}`, "If-Match", `"1"`), http.StatusNotFound)

	// A list naming the current version matches, and so does "*".
	r = h.do("POST", path+"/cancel", "application/json", `{"at":"period_end"}`, "If-Match", `"1", "2"`)
	h.expect(r, http.StatusOK, "cancel with a list naming the current version")
	decodeInto(t, r, &sub)
	if sub.Version != 3 || sub.Status != "scheduled_cancel" || r.Header.Get("ETag") != `"3"` {
		t.Fatalf("canceled: %+v, ETag %q; want version 3, scheduled_cancel", sub, r.Header.Get("ETag"))
	}
	// Cancelling at period end again writes nothing: the version stays.
	r = h.do("POST", path+"/cancel", "application/json", `{"at":"period_end"}`, "If-Match", "*")
	h.expect(r, http.StatusOK, "repeated cancel with If-Match *")
	if decodeInto(t, r, &sub); sub.Version != 3 || r.Header.Get("ETag") != `"3"` {
		t.Errorf("repeated cancel: version %d, ETag %q; want 3", sub.Version, r.Header.Get("ETag"))
	}
}

// Updates based on the same read race: exactly one is applied, every other
// is refused with 412, and the stored subscription is the winner's.
func TestConcurrentSubscriptionUpdatesWithIfMatch(t *testing.T) {
	h := newChangeHarness(t)
	var sub apiVersioned
	h.json("POST", "/api/v1/subscriptions", `{"customer":"contoso","plan":"mail-pro"}`, http.StatusCreated, &sub)
	read, etag := h.subscription(sub.ID)
	path := "/api/v1/subscriptions/" + sub.ID
	var reqs [][4]string
	for i := range 8 {
		if i%2 == 0 {
			reqs = append(reqs, [4]string{"POST", path + "/cancel", `{"at":"now"}`, etag})
		} else {
			reqs = append(reqs, [4]string{"POST", path + "/change", `{"plan":"mail-team","at":"period_end"}`, etag})
		}
	}
	winner := -1
	for i, r := range raceRequests(h, reqs) {
		switch {
		case r.status == http.StatusOK && winner < 0:
			winner = i
		case r.status == http.StatusOK:
			t.Errorf("requests %d and %d, both based on version %d, succeeded", winner, i, read.Version)
		case r.status != http.StatusPreconditionFailed || !strings.Contains(r.body, `"status":412`):
			t.Errorf("request %d: %d %s; want 200 or 412", i, r.status, r.body)
		}
	}
	if winner < 0 {
		t.Fatal("no request succeeded")
	}
	got, _ := h.subscription(sub.ID)
	want := "canceled with no plan change"
	ok := got.Status == "canceled" && len(got.Phases) == 0
	if winner%2 == 1 {
		want, ok = "active, changing to mail-team", got.Status == "active" && len(got.Phases) == 1
	}
	if got.Version != read.Version+1 || !ok {
		t.Errorf("after the race won by request %d: %+v; want version %d, %s", winner, got, read.Version+1, want)
	}
}

// Without If-Match, concurrent updates are applied one after the other, each
// to what the one before stored: every 200 is true of the stored result.
func TestConcurrentSubscriptionUpdatesWithoutIfMatch(t *testing.T) {
	h := newChangeHarness(t)
	for round := range 6 {
		key := fmt.Sprintf("round-%d", round)
		h.json("POST", "/api/v1/customers", `{"key":"`+key+`","name":"R","currency":"EUR"}`, http.StatusCreated, nil)
		var sub apiVersioned
		h.json("POST", "/api/v1/subscriptions", `{"customer":"`+key+`","plan":"mail-pro"}`, http.StatusCreated, &sub)
		path := "/api/v1/subscriptions/" + sub.ID
		res := raceRequests(h, [][4]string{
			{"POST", path + "/change", `{"plan":"mail-team","at":"period_end"}`, ""},
			{"POST", path + "/cancel", `{"at":"period_end"}`, ""},
		})
		changed, canceled := res[0].status == http.StatusOK, res[1].status == http.StatusOK
		for i, r := range res {
			if r.status != http.StatusOK && r.status != http.StatusConflict {
				t.Errorf("round %d, request %d: %d %s; want 200 or 409", round, i, r.status, r.body)
			}
		}
		got, _ := h.subscription(sub.ID)
		writes := 0
		if changed {
			writes++
			if len(got.Phases) != 1 {
				t.Errorf("round %d: the plan change was answered 200 but is not stored: %+v", round, got)
			}
		}
		if canceled {
			writes++
			if got.Status != "scheduled_cancel" {
				t.Errorf("round %d: the cancellation was answered 200 but is not stored: %+v", round, got)
			}
		}
		if writes == 0 || got.Version != 1+writes {
			t.Errorf("round %d: %d writes answered 200, version %d; want at least one, version 1+writes (change %s; cancel %s)",
				round, writes, got.Version, res[0].body, res[1].body)
		}
		var body struct{ Version int }
		if err := json.Unmarshal([]byte(res[1].body), &body); canceled && (err != nil || res[1].etag != fmt.Sprintf(`"%d"`, body.Version)) {
			t.Errorf("round %d: cancel answered ETag %q for version %d", round, res[1].etag, body.Version)
		}
	}
}
