package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

// decodeJSON reads a JSON body into v, refusing unknown fields so that a
// misspelt field is an error rather than silently ignored. An empty body
// reads as emptyOK's value when that is set.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxJSONBody))
	if err != nil {
		return &queryError{fmt.Errorf("read body: %w", err)}
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return &queryError{errors.New("body: empty; send a JSON document")}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return &queryError{fmt.Errorf("body is not valid JSON at byte %d: %v", se.Offset, err)}
		case errors.As(err, &te):
			if te.Field == "" {
				return &queryError{fmt.Errorf("body: must be %s, got JSON %s", jsonKindOf(te.Type.Kind().String()), te.Value)}
			}
			return &queryError{fmt.Errorf("%s: must be %s, got JSON %s", te.Field, jsonKindOf(te.Type.Kind().String()), te.Value)}
		}
		return &queryError{fmt.Errorf("body: %v", err)}
	}
	if dec.More() {
		return &queryError{errors.New("body: unexpected data after the JSON value")}
	}
	return nil
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
	writeJSON(w, http.StatusOK, ms)
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
	writeJSON(w, http.StatusCreated, m)
}

func (s *Server) getMeter(w http.ResponseWriter, r *http.Request) {
	m, err := s.Store.GetMeter(r.Context(), r.PathValue("idOrSlug"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, m)
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
	writeJSON(w, http.StatusOK, m)
}

func (s *Server) deleteMeter(w http.ResponseWriter, r *http.Request) {
	if err := s.Pipeline.DeleteMeter(r.Context(), r.PathValue("idOrSlug")); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// jsonKindOf names a Go kind as the JSON type a client must send.
func jsonKindOf(kind string) string {
	switch kind {
	case "slice", "array":
		return "a JSON array"
	case "struct", "map":
		return "a JSON object"
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "ptr", "interface":
		return "a JSON value"
	}
	return "a number"
}
