package httpapi

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/tally-metering/tally/internal/meter"
)

// maxJSONBody caps the body of non-ingest JSON requests.
const maxJSONBody = 1 << 20

// meterInput is the body of POST and PUT /api/v1/meters.
type meterInput struct {
	Slug          string            `json:"slug"`
	Name          string            `json:"name"`
	Description   string            `json:"description"`
	EventType     string            `json:"eventType"`
	Aggregation   meter.Aggregation `json:"aggregation"`
	ValueProperty string            `json:"valueProperty"`
	GroupBy       map[string]string `json:"groupBy"`
	EventFrom     *time.Time        `json:"eventFrom"`
	// WindowSize is accepted and ignored: older OpenMeter clients send it,
	// and tally keeps per-minute rollups for every meter.
	WindowSize *string `json:"windowSize"`
	// The read-only fields of a meter are accepted and ignored, so that a
	// meter read with GET can be sent back with PUT.
	ID        *string         `json:"id"`
	ManagedBy *string         `json:"managedBy"`
	CreatedAt json.RawMessage `json:"createdAt"`
	UpdatedAt json.RawMessage `json:"updatedAt"`
}

func (in meterInput) meter() meter.Meter {
	m := meter.Meter{
		Slug: in.Slug, Name: in.Name, Description: in.Description, EventType: in.EventType,
		Aggregation: in.Aggregation, ValueProperty: in.ValueProperty, GroupBy: in.GroupBy, EventFrom: in.EventFrom,
	}
	if m.EventFrom != nil {
		t := m.EventFrom.UTC()
		m.EventFrom = &t
	}
	return m
}

func (s *Server) listMeters(w http.ResponseWriter, r *http.Request) {
	ms, err := s.Store.ListMeters(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if ms == nil {
		ms = []meter.Meter{}
	}
	s.writeJSON(w, r, http.StatusOK, ms)
}

func (s *Server) createMeter(w http.ResponseWriter, r *http.Request) {
	var in meterInput
	if err := decodeJSON(w, r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	m, err := s.Pipeline.CreateMeter(r.Context(), in.meter())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/meters/"+m.Slug)
	s.writeJSON(w, r, http.StatusCreated, m)
}

func (s *Server) getMeter(w http.ResponseWriter, r *http.Request) {
	m, err := s.Store.GetMeter(r.Context(), r.PathValue("idOrSlug"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, m)
}

func (s *Server) updateMeter(w http.ResponseWriter, r *http.Request) {
	var in meterInput
	if err := decodeJSON(w, r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	m, err := s.Pipeline.UpdateMeter(r.Context(), r.PathValue("idOrSlug"), in.meter())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, m)
}

func (s *Server) deleteMeter(w http.ResponseWriter, r *http.Request) {
	if err := s.Pipeline.DeleteMeter(r.Context(), r.PathValue("idOrSlug")); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
