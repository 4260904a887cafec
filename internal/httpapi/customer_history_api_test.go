package httpapi_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestCustomerSubjectHistory: a customer read shows its current subjects
// and, in subjectHistory, when it owned each subject it ever had, in whole
// minutes; the create and update answers show it too.
func TestCustomerSubjectHistory(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{token: "secret"})
	type ownership struct {
		Subject string     `json:"subject"`
		From    *time.Time `json:"from"`
		To      *time.Time `json:"to"`
	}
	type customer struct {
		Subjects       []string    `json:"subjects"`
		SubjectHistory []ownership `json:"subjectHistory"`
	}
	at := func(s string) *time.Time { v := utc(s); return &v }

	var a, b customer
	h.json("POST", "/api/v1/customers", `{"key":"a","name":"A","currency":"EUR","subjects":["relay"]}`, http.StatusCreated, &a)
	if diff := cmp.Diff([]ownership{{Subject: "relay"}}, a.SubjectHistory); diff != "" {
		t.Errorf("created customer's subjectHistory (-want +got):\n%s", diff)
	}
	h.clock.Advance(utc("2026-06-10T12:00:30Z").Sub(apiStart))
	h.json("PUT", "/api/v1/customers/a", `{"name":"A","currency":"EUR","subjects":[]}`, http.StatusOK, &a)
	h.clock.Advance(15 * time.Second)
	h.json("POST", "/api/v1/customers", `{"key":"b","name":"B","currency":"EUR","subjects":["relay"]}`, http.StatusCreated, &b)

	h.json("GET", "/api/v1/customers/a", "", http.StatusOK, &a)
	h.json("GET", "/api/v1/customers/b", "", http.StatusOK, &b)
	if diff := cmp.Diff(customer{Subjects: []string{}, SubjectHistory: []ownership{{Subject: "relay", To: at("2026-06-10T12:01:00Z")}}}, a); diff != "" {
		t.Errorf("GET a (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(customer{Subjects: []string{"relay"}, SubjectHistory: []ownership{{Subject: "relay", From: at("2026-06-10T12:01:00Z")}}}, b); diff != "" {
		t.Errorf("GET b (-want +got):\n%s", diff)
	}
	// subjectHistory is read-only.
	h.json("PUT", "/api/v1/customers/b", `{"name":"B","currency":"EUR","subjects":["relay"],"subjectHistory":[]}`, http.StatusBadRequest, nil)
}
