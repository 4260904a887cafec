package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tally-metering/tally/internal/bounds"
)

// fuzzLimits are small so that the fuzzer reaches every limit.
var fuzzLimits = Limits{MaxEvents: 20, MaxEventBytes: 4096, MaxIDBytes: 32, MaxFutureSkew: 48 * time.Hour, MaxDataDepth: 4}

// FuzzDecode checks Decode's invariants on arbitrary input, and checks it
// against encoding/json: on what Decode accepts, and on whether a body is
// well-formed JSON. Seeds are in testdata/fuzz/FuzzDecode as well as below.
func FuzzDecode(f *testing.F) {
	for _, ct := range []string{MediaTypeCloudEvent, MediaTypeCloudEventBatch, MediaTypeJSON, MediaTypeNDJSON} {
		f.Add(ct, []byte(ev()))
		f.Add(ct, []byte("["+ev()+","+ev("id", `"e2"`, "time", omit, "data", "null")+"]"))
		f.Add(ct, []byte(ev()+"\n\n"+ev("id", `"\u00e9"`, "time", `"2026-11-22T10:00:00.5+02:00"`)+"\n"))
	}
	f.Add("application/json; charset=utf-8", []byte(`[{"specversion":"1.0","id":"x","source":"s","type":"t","subject":"u","ext":[1,{"a":null}],"data":{"v":-1.5e3}}]`))
	f.Add("text/plain", []byte(ev()))
	f.Add(MediaTypeJSON, []byte(`[{"id":5},"x",[]]`))
	f.Add(MediaTypeNDJSON, []byte("{\"id\":\"a\"}\n[1]\n{\"specversion\":\"1.0\" x"))

	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		orig := bytes.Clone(body)
		evs, err := Decode(contentType, body, now, fuzzLimits)
		if !bytes.Equal(body, orig) {
			t.Fatal("Decode modified the body")
		}
		if err != nil {
			checkFuzzError(t, contentType, body, evs, err)
			return
		}
		if len(evs) == 0 {
			t.Fatal("no events and no error")
		}
		if len(evs) > fuzzLimits.MaxEvents {
			t.Fatalf("%d events, more than MaxEvents", len(evs))
		}
		if f, _ := parseContentType(contentType); f != formatNDJSON && (!json.Valid(body) || !utf8.Valid(body)) {
			t.Fatalf("accepted a body that is not valid JSON: %q", body)
		}
		for i, e := range evs {
			checkFuzzEvent(t, i, e, now)
		}
	})
}

// checkFuzzEvent checks one event Decode accepted, decoding its Raw again
// with encoding/json.
func checkFuzzEvent(t *testing.T, i int, e Event, now time.Time) {
	t.Helper()
	if e.ID == "" || e.Source == "" || e.Type == "" || e.Subject == "" {
		t.Fatalf("event %d: empty required attribute: %+v", i, e)
	}
	if len(e.ID) > fuzzLimits.MaxIDBytes || len(e.Raw) > fuzzLimits.MaxEventBytes {
		t.Fatalf("event %d: over a limit: %+v", i, e)
	}
	if !json.Valid(e.Raw) || e.Raw[0] != '{' || e.Raw[len(e.Raw)-1] != '}' {
		t.Fatalf("event %d: Raw is not a JSON object: %q", i, e.Raw)
	}
	if e.Data != nil && (!json.Valid(e.Data) || e.Data[0] != '{') {
		t.Fatalf("event %d: Data is not a JSON object: %q", i, e.Data)
	}
	if d := jsonDepth(e.Data); d > fuzzLimits.MaxDataDepth {
		t.Fatalf("event %d: Data nests %d levels deep: %q", i, d, e.Data)
	}
	if e.Time.Location() != time.UTC {
		t.Fatalf("event %d: Time %v not in UTC", i, e.Time)
	}
	if !e.TimeSet && !e.Time.Equal(now) {
		t.Fatalf("event %d: Time %v without TimeSet is not now", i, e.Time)
	}
	if e.TimeSet && e.Time.Sub(now) > fuzzLimits.MaxFutureSkew {
		t.Fatalf("event %d: Time %v too far in the future", i, e.Time)
	}

	var m map[string]json.RawMessage
	if err := json.Unmarshal(e.Raw, &m); err != nil {
		t.Fatalf("event %d: encoding/json rejects Raw: %v", i, err)
	}
	str := func(name string) string {
		var s string
		if err := json.Unmarshal(m[name], &s); err != nil {
			t.Fatalf("event %d: encoding/json: %s: %v", i, name, err)
		}
		return s
	}
	if sv := str("specversion"); sv != "1.0" {
		t.Fatalf("event %d: specversion %q", i, sv)
	}
	for name, got := range map[string]string{"id": e.ID, "source": e.Source, "type": e.Type, "subject": e.Subject} {
		if want := str(name); got != want {
			t.Fatalf("event %d: %s = %q, encoding/json says %q", i, name, got, want)
		}
	}
	if err := bounds.CheckSubject(e.Subject); err != nil {
		t.Fatalf("event %d: subject accepted against the subject syntax: %v", i, err)
	}
	if !bounds.InRange(e.Time) {
		t.Fatalf("event %d: Time %v accepted out of bounds", i, e.Time)
	}
	if raw, ok := m["time"]; ok && string(raw) != "null" {
		want, err := time.Parse(time.RFC3339Nano, str("time"))
		if err != nil || !e.TimeSet || !want.Equal(e.Time) {
			t.Fatalf("event %d: Time %v (set %v); time.Parse: %v, %v", i, e.Time, e.TimeSet, want, err)
		}
	} else if e.TimeSet {
		t.Fatalf("event %d: TimeSet without a time", i)
	}
	if raw, ok := m["data"]; ok && string(raw) != "null" {
		if !bytes.Equal(raw, e.Data) {
			t.Fatalf("event %d: Data %q, encoding/json says %q", i, e.Data, raw)
		}
	} else if e.Data != nil {
		t.Fatalf("event %d: Data %q without data", i, e.Data)
	}
}

// checkFuzzError checks an error from Decode.
func checkFuzzError(t *testing.T, contentType string, body []byte, evs []Event, err error) {
	t.Helper()
	if evs != nil {
		t.Fatalf("events returned with error %v", err)
	}
	f, ctErr := parseContentType(contentType)
	if errors.Is(err, ErrUnsupportedMediaType) {
		if ctErr == nil {
			t.Fatalf("supported type %q rejected: %v", contentType, err)
		}
		return
	}
	var inv *InvalidError
	if !errors.As(err, &inv) {
		t.Fatalf("error is neither *InvalidError nor ErrUnsupportedMediaType: %#v", err)
	}
	if len(inv.Problems) == 0 || len(inv.Problems) > MaxProblems {
		t.Fatalf("%d problems", len(inv.Problems))
	}
	if inv.TooLarge && inv.Problems[0].Index != -1 {
		t.Fatalf("TooLarge without a request-level problem first: %v", inv)
	}
	for _, p := range inv.Problems {
		if p.Index < -1 || p.Message == "" {
			t.Fatalf("bad problem %+v", p)
		}
		// Decode must not call well-formed JSON malformed.
		if f != formatNDJSON && strings.HasPrefix(p.Message, "malformed JSON") && json.Valid(body) && utf8.Valid(body) {
			t.Fatalf("well-formed body reported malformed: %v", inv)
		}
	}
}

// FuzzParseTime checks the fast timestamp parser against time.Parse.
func FuzzParseTime(f *testing.F) {
	for _, s := range []string{"2026-11-22T10:00:00Z", "2026-11-22T10:00:00.123456789+01:30", "2024-02-29T23:59:59-00:00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { checkParseTime(t, s) })
}

// jsonDepth returns how deep objects and arrays nest in the valid JSON b.
func jsonDepth(b []byte) int {
	dec := json.NewDecoder(bytes.NewReader(b))
	depth, peak := 0, 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return peak
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
			peak = max(peak, depth)
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
	}
}
