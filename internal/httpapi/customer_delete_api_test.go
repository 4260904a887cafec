package httpapi_test

import (
	"net/http"
	"testing"
)

// TestDeleteCustomerEndsItsSubscriptions: deleting a customer frees its
// subjects for another customer. Its subscriptions must end with it, or
// they go on billing base fees for ever and, once a new customer owns the
// subjects, bill that customer's usage a second time.
func TestDeleteCustomerEndsItsSubscriptions(t *testing.T) {
	h := newChangeHarness(t)
	h.clock.Advance(utc("2026-06-16T00:00:00Z").Sub(apiStart))
	var sub apiSubscription
	h.json("POST", "/api/v1/subscriptions", `{"customer":"contoso","plan":"mail-pro","start":"2026-06-01T00:00:00Z"}`, http.StatusCreated, &sub)
	h.json("DELETE", "/api/v1/customers/contoso", "", http.StatusNoContent, nil)
	h.json("POST", "/api/v1/customers", `{"key":"acme","name":"Acme","currency":"EUR","subjects":["contoso-mail"]}`, http.StatusCreated, nil)
	var other apiSubscription
	h.json("POST", "/api/v1/subscriptions", `{"customer":"acme","plan":"mail-pro"}`, http.StatusCreated, &other)
	h.clock.Advance(utc("2026-06-20T00:00:00Z").Sub(h.clock.Now()))
	h.ingest(batchCT, jsonArray(mailEvent("m1", "2026-06-18T00:00:00Z", "2500")))

	var got apiSubscription
	h.json("GET", "/api/v1/subscriptions/"+sub.ID, "", http.StatusOK, &got)
	if got.Status != "canceled" || got.CancelAt == nil || !got.CancelAt.Equal(utc("2026-06-16T00:00:00Z")) {
		t.Errorf("deleted customer's subscription: %+v", got)
	}
	// Half of June on the deleted customer: 5.00, none of acme's e-mails.
	if invs := h.invoicesOf(sub.ID); len(invs) != 1 || invs[0].Total != "5.00" {
		t.Errorf("deleted customer's invoices: %+v", invs)
	}
	if invs := h.invoicesOf(other.ID); len(invs) != 1 || invs[0].Total != "20.00" {
		t.Errorf("new owner's invoices: %+v", invs)
	}
	// Deleting again is harmless.
	h.json("DELETE", "/api/v1/customers/"+got.CustomerID, "", http.StatusNoContent, nil)
}
