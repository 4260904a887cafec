package event

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tally-metering/tally/internal/bounds"
)

// testNow is the receive time used throughout the tests.
var testNow = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// omit, as a value passed to ev, leaves the attribute out.
const omit = "\x00omit"

// basePairs is a valid event as key, raw JSON value pairs.
var basePairs = []string{
	"specversion", `"1.0"`,
	"id", `"e1"`,
	"source", `"src"`,
	"type", `"request"`,
	"subject", `"cust-1"`,
	"time", `"2026-11-22T10:00:00Z"`,
	"data", `{"value":1}`,
}

// ev returns the JSON of a valid event changed by over, a list of key, raw
// JSON value pairs: a value replaces the base one, omit removes it, and new
// keys are appended.
func ev(over ...string) string {
	pairs := append([]string(nil), basePairs...)
	for i := 0; i < len(over); i += 2 {
		k, v := over[i], over[i+1]
		found := false
		for j := 0; j < len(pairs); j += 2 {
			if pairs[j] == k {
				pairs[j+1] = v
				found = true
			}
		}
		if !found {
			pairs = append(pairs, k, v)
		}
	}
	var b strings.Builder
	b.WriteByte('{')
	first := true
	for j := 0; j < len(pairs); j += 2 {
		if pairs[j+1] == omit {
			continue
		}
		if !first {
			b.WriteByte(',')
		}
		first = false
		fmt.Fprintf(&b, "%q:%s", pairs[j], pairs[j+1])
	}
	b.WriteByte('}')
	return b.String()
}

// baseEvent is what ev() with no changes decodes to, less Raw.
func baseEvent() Event {
	return Event{
		ID: "e1", Source: "src", Type: "request", Subject: "cust-1",
		Time: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC), TimeSet: true,
		Data: json.RawMessage(`{"value":1}`),
	}
}

// diffEvents describes how got differs from want, or returns "".
func diffEvents(got, want []Event) string {
	var b strings.Builder
	if len(got) != len(want) {
		fmt.Fprintf(&b, "got %d events, want %d\n", len(got), len(want))
	}
	for i := 0; i < len(got) && i < len(want); i++ {
		g, w := got[i], want[i]
		field := func(name string, gv, wv any) {
			if !reflect.DeepEqual(gv, wv) {
				fmt.Fprintf(&b, "event %d %s:\n\tgot  %v\n\twant %v\n", i, name, gv, wv)
			}
		}
		field("ID", g.ID, w.ID)
		field("Source", g.Source, w.Source)
		field("Type", g.Type, w.Type)
		field("Subject", g.Subject, w.Subject)
		if !g.Time.Equal(w.Time) || g.Time.Location() != time.UTC {
			fmt.Fprintf(&b, "event %d Time:\n\tgot  %v\n\twant %v (UTC)\n", i, g.Time, w.Time)
		}
		field("TimeSet", g.TimeSet, w.TimeSet)
		field("Data", string(g.Data), string(w.Data))
		field("Data == nil", g.Data == nil, w.Data == nil)
		field("Raw", string(g.Raw), string(w.Raw))
	}
	return b.String()
}

// diffProblems compares problems: Index and Field exactly, and want's
// Message must occur in got's.
func diffProblems(got, want []Problem) string {
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		ok = got[i].Index == want[i].Index && got[i].Field == want[i].Field &&
			strings.Contains(got[i].Message, want[i].Message)
	}
	if ok {
		return ""
	}
	var b strings.Builder
	b.WriteString("got problems:\n")
	for _, p := range got {
		fmt.Fprintf(&b, "\t%d %q %q\n", p.Index, p.Field, p.Message)
	}
	b.WriteString("want (message as a substring):\n")
	for _, p := range want {
		fmt.Fprintf(&b, "\t%d %q %q\n", p.Index, p.Field, p.Message)
	}
	return b.String()
}

// problemsOf returns the problems of an *InvalidError, failing the test for
// any other outcome.
func problemsOf(t *testing.T, evs []Event, err error) *InvalidError {
	t.Helper()
	var inv *InvalidError
	if !errors.As(err, &inv) {
		t.Fatalf("Decode = %d events, %v; want an *InvalidError", len(evs), err)
	}
	if evs != nil {
		t.Errorf("Decode returned %d events with its error", len(evs))
	}
	return inv
}

type decodeCase struct {
	name string
	ct   string // Content-Type; application/cloudevents+json when empty
	body string
	lim  Limits
	want []Event   // with Raw, when the request is valid
	errs []Problem // when it is not
	big  bool      // want InvalidError.TooLarge
}

func runCases(t *testing.T, cases []decodeCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ct := tc.ct
			if ct == "" {
				ct = MediaTypeCloudEvent
			}
			evs, err := Decode(ct, []byte(tc.body), testNow, tc.lim)
			if tc.errs == nil {
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				if d := diffEvents(evs, tc.want); d != "" {
					t.Error(d)
				}
				for i, e := range evs {
					if cap(e.Raw) != len(e.Raw) || cap(e.Data) != len(e.Data) {
						t.Errorf("event %d: Raw or Data capacity not clipped", i)
					}
				}
				return
			}
			inv := problemsOf(t, evs, err)
			if d := diffProblems(inv.Problems, tc.errs); d != "" {
				t.Error(d)
			}
			if inv.TooLarge != tc.big {
				t.Errorf("TooLarge = %v, want %v", inv.TooLarge, tc.big)
			}
		})
	}
}

// withRaw returns e with Raw set.
func withRaw(e Event, raw string) Event {
	e.Raw = json.RawMessage(raw)
	return e
}

func TestDecodeContentTypes(t *testing.T) {
	one := ev()
	two := ev("id", `"e2"`)
	e1 := withRaw(baseEvent(), one)
	e2 := baseEvent()
	e2.ID = "e2"
	e2 = withRaw(e2, two)
	cases := []decodeCase{
		{name: "cloudevents", ct: "application/cloudevents+json", body: one, want: []Event{e1}},
		{name: "cloudevents charset", ct: "application/cloudevents+json; charset=utf-8", body: one, want: []Event{e1}},
		{name: "cloudevents case and spaces", ct: " Application/CloudEvents+JSON ;charset=UTF-8", body: one, want: []Event{e1}},
		{name: "batch", ct: "application/cloudevents-batch+json", body: "[" + one + "," + two + "]", want: []Event{e1, e2}},
		{name: "batch charset", ct: "application/cloudevents-batch+json; charset=utf-8", body: "[" + one + "]", want: []Event{e1}},
		{name: "json object", ct: "application/json", body: one, want: []Event{e1}},
		{name: "json array", ct: "application/json; charset=utf-8", body: "[" + one + "," + two + "]", want: []Event{e1, e2}},
		{name: "x-ndjson", ct: "application/x-ndjson", body: one + "\n" + two + "\n", want: []Event{e1, e2}},
		{name: "ndjson", ct: "application/ndjson; charset=utf-8", body: one + "\n" + two, want: []Event{e1, e2}},
		{name: "ndjson with an array line", ct: "application/x-ndjson", body: "[" + one + "]",
			errs: []Problem{{0, "", "must be a JSON object, got array"}}},
		{name: "cloudevents with an array", ct: MediaTypeCloudEvent, body: "[" + one + "]",
			errs: []Problem{{-1, "", "application/cloudevents+json requires one JSON event object, got array (send a batch as application/cloudevents-batch+json)"}}},
		{name: "batch with an object", ct: MediaTypeCloudEventBatch, body: one,
			errs: []Problem{{-1, "", "application/cloudevents-batch+json requires a JSON array of event objects, got object"}}},
		{name: "json with a number", ct: MediaTypeJSON, body: "42",
			errs: []Problem{{-1, "", "must be a JSON event object or an array of them, got number"}}},
		{name: "json with a string", ct: MediaTypeJSON, body: `"hello"`,
			errs: []Problem{{-1, "", "got string"}}},
	}
	runCases(t, cases)
}

func TestDecodeUnsupportedMediaType(t *testing.T) {
	for _, ct := range []string{"", "  ", "text/plain", "application/xml; charset=utf-8", "application/cloudevents",
		"application/json-seq", "multipart/form-data", ";charset=utf-8"} {
		t.Run(ct, func(t *testing.T) {
			evs, err := Decode(ct, []byte(ev()), testNow, Limits{})
			if !errors.Is(err, ErrUnsupportedMediaType) || evs != nil {
				t.Fatalf("Decode = %v, %v; want ErrUnsupportedMediaType", evs, err)
			}
			msg := err.Error()
			for _, accepted := range []string{MediaTypeCloudEvent, MediaTypeCloudEventBatch, MediaTypeJSON, MediaTypeNDJSON} {
				if !strings.Contains(msg, accepted) {
					t.Errorf("message %q does not name %s", msg, accepted)
				}
			}
			if strings.TrimSpace(ct) != "" && !strings.Contains(msg, fmt.Sprintf("%q", ct)) {
				t.Errorf("message %q does not name the type received", msg)
			}
			if strings.TrimSpace(ct) == "" && !strings.Contains(msg, "no Content-Type") {
				t.Errorf("message %q does not say the type is missing", msg)
			}
		})
	}
}

func TestDecodeRequiredAttributes(t *testing.T) {
	var cases []decodeCase
	for _, name := range []string{"specversion", "id", "source", "type", "subject"} {
		cases = append(cases,
			decodeCase{name: name + " missing", body: ev(name, omit),
				errs: []Problem{{0, name, "required attribute is missing"}}},
			decodeCase{name: name + " null", body: ev(name, "null"),
				errs: []Problem{{0, name, "required attribute is missing"}}},
			decodeCase{name: name + " number", body: ev(name, "1.0"),
				errs: []Problem{{0, name, "must be a string, got number"}}},
			decodeCase{name: name + " boolean", body: ev(name, "true"),
				errs: []Problem{{0, name, "must be a string, got boolean"}}},
			decodeCase{name: name + " object", body: ev(name, `{"a":"b"}`),
				errs: []Problem{{0, name, "must be a string, got object"}}},
			decodeCase{name: name + " array", body: ev(name, `["x"]`),
				errs: []Problem{{0, name, "must be a string, got array"}}},
		)
		emptyMsg := "must not be empty"
		if name == "specversion" {
			emptyMsg = `must be "1.0", got ""`
		}
		cases = append(cases, decodeCase{name: name + " empty", body: ev(name, `""`),
			errs: []Problem{{0, name, emptyMsg}}})
	}
	cases = append(cases,
		decodeCase{name: "specversion 0.3", body: ev("specversion", `"0.3"`),
			errs: []Problem{{0, "specversion", `must be "1.0", got "0.3"`}}},
		decodeCase{name: "specversion 1", body: ev("specversion", `"1"`),
			errs: []Problem{{0, "specversion", `must be "1.0", got "1"`}}},
		decodeCase{name: "specversion escaped", body: ev("specversion", `"1\u002e0"`),
			want: []Event{withRaw(baseEvent(), ev("specversion", `"1\u002e0"`))}},
		decodeCase{name: "all missing", body: `{}`, errs: []Problem{
			{0, "specversion", "required attribute is missing"},
			{0, "id", "required attribute is missing"},
			{0, "source", "required attribute is missing"},
			{0, "type", "required attribute is missing"},
			{0, "subject", "required attribute is missing"},
		}},
		decodeCase{name: "names are case-sensitive", body: ev("id", omit, "ID", `"e1"`),
			errs: []Problem{{0, "id", "required attribute is missing"}}},
	)
	runCases(t, cases)
}

func TestDecodeStrings(t *testing.T) {
	escaped := ev("id", `"\u00e9v\u00e9nement \"1\"\n"`, "subject", `"caf\u00e9"`)
	want := baseEvent()
	want.ID = "événement \"1\"\n"
	want.Subject = "café"
	utf := ev("source", `"日本/ソース"`)
	wantUTF := baseEvent()
	wantUTF.Source = "日本/ソース"
	escapedKey := strings.Replace(ev(), `"id"`, `"\u0069d"`, 1)
	badUTF8 := ev("subject", "\"a\xffb\"")
	ctrl := ev("subject", "\"a\tb\"")
	runCases(t, []decodeCase{
		{name: "escapes", body: escaped, want: []Event{withRaw(want, escaped)}},
		{name: "utf-8", body: utf, want: []Event{withRaw(wantUTF, utf)}},
		{name: "escaped key", body: escapedKey, want: []Event{withRaw(baseEvent(), escapedKey)}},
		{name: "invalid utf-8", body: badUTF8,
			errs: []Problem{{0, "", fmt.Sprintf("malformed JSON at byte offset %d: invalid UTF-8 byte 0xff in string", strings.IndexByte(badUTF8, 0xff))}}},
		{name: "surrogate in utf-8", body: ev("subject", "\"a\xed\xa0\x80b\""),
			errs: []Problem{{0, "", "invalid UTF-8 byte 0xed in string"}}},
		{name: "control character", body: ctrl,
			errs: []Problem{{0, "", fmt.Sprintf("malformed JSON at byte offset %d: invalid character '\\t', expected a string character (control characters must be escaped)", strings.IndexByte(ctrl, '\t'))}}},
		{name: "bad escape", body: ev("subject", `"a\xb"`),
			errs: []Problem{{0, "", `invalid character 'x', expected an escape sequence`}}},
		{name: "bad unicode escape", body: ev("subject", `"a\u12G4"`),
			errs: []Problem{{0, "", `invalid character 'G', expected a hexadecimal digit in a \u escape`}}},
	})
}

// TestDecodeSubject checks that event subjects follow the one subject
// syntax (bounds.CheckSubject): "\u0000" once collided with an internal
// "no subject" marker.
func TestDecodeSubject(t *testing.T) {
	s256 := strings.Repeat("s", 256)
	want := baseEvent()
	want.Subject = s256
	two := "[" + ev("id", `"a"`, "subject", `"\u0000"`) + "," + ev("id", `""`, "subject", `"x\u007f"`) + "]"
	runCases(t, []decodeCase{
		{name: "256 bytes", body: ev("subject", `"`+s256+`"`), want: []Event{withRaw(want, ev("subject", `"`+s256+`"`))}},
		{name: "257 bytes", body: ev("subject", `"`+s256+`s"`),
			errs: []Problem{{0, "subject", "is 257 bytes long, at most 256 allowed"}}},
		{name: "nul", body: ev("subject", `"\u0000"`),
			errs: []Problem{{0, "subject", `"\x00" holds the control character U+0000 at byte 0; subjects can't contain control characters`}}},
		{name: "newline", body: ev("subject", `"a\nb"`),
			errs: []Problem{{0, "subject", "control character U+000A at byte 1"}}},
		{name: "c1", body: ev("subject", `"a\u0085"`),
			errs: []Problem{{0, "subject", "control character U+0085"}}},
		{name: "line separator", body: ev("subject", `"a\u2028"`),
			errs: []Problem{{0, "subject", "separator U+2028"}}},
		{name: "bidi override", body: ev("subject", `"a\u202eb"`),
			errs: []Problem{{0, "subject", "bidirectional formatting character U+202E"}}},
		{name: "listed with other problems", ct: MediaTypeCloudEventBatch, body: two,
			errs: []Problem{{0, "subject", "U+0000"}, {1, "id", "must not be empty"}, {1, "subject", "U+007F"}}},
	})
}

func TestDecodeIDLength(t *testing.T) {
	id256 := strings.Repeat("x", 256)
	want := baseEvent()
	want.ID = id256
	runCases(t, []decodeCase{
		{name: "256 bytes", body: ev("id", `"`+id256+`"`), want: []Event{withRaw(want, ev("id", `"`+id256+`"`))}},
		{name: "257 bytes", body: ev("id", `"`+id256+`x"`),
			errs: []Problem{{0, "id", "is 257 bytes long, at most 256 allowed"}}},
		{name: "300 bytes", body: ev("id", `"`+strings.Repeat("é", 150)+`"`),
			errs: []Problem{{0, "id", "is 300 bytes long, at most 256 allowed"}}},
		{name: "decoded length counts", body: ev("id", `"`+strings.Repeat(`\u0041`, 9)+`"`), lim: Limits{MaxIDBytes: 8},
			errs: []Problem{{0, "id", "is 9 bytes long, at most 8 allowed"}}},
		{name: "custom limit", body: ev("id", `"12345678"`), lim: Limits{MaxIDBytes: 8},
			want: []Event{withRaw(func() Event { e := baseEvent(); e.ID = "12345678"; return e }(), ev("id", `"12345678"`))}},
	})
}

func TestDecodeTime(t *testing.T) {
	at := func(tm time.Time, set bool, raw string) []Event {
		e := baseEvent()
		e.Time, e.TimeSet = tm, set
		return []Event{withRaw(e, raw)}
	}
	utc := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm.UTC()
	}
	ok := func(name, value, wantUTC string) decodeCase {
		body := ev("time", value)
		return decodeCase{name: name, body: body, want: at(utc(wantUTC), true, body)}
	}
	bad := func(name, value, msg string) decodeCase {
		return decodeCase{name: name, body: ev("time", value), errs: []Problem{{0, "time", msg}}}
	}
	runCases(t, []decodeCase{
		ok("utc", `"2026-11-22T10:00:00Z"`, "2026-11-22T10:00:00Z"),
		ok("millis", `"2026-11-22T10:00:00.123Z"`, "2026-11-22T10:00:00.123Z"),
		ok("nanos", `"2026-11-22T10:00:00.123456789Z"`, "2026-11-22T10:00:00.123456789Z"),
		ok("positive offset", `"2026-11-22T12:30:00.5+02:30"`, "2026-11-22T10:00:00.5Z"),
		ok("negative offset", `"2026-11-22T05:00:00-05:00"`, "2026-11-22T10:00:00Z"),
		ok("offset across midnight", `"2026-11-21T23:00:00-11:00"`, "2026-11-22T10:00:00Z"),
		ok("zero offset", `"2026-11-22T10:00:00+00:00"`, "2026-11-22T10:00:00Z"),
		ok("leap day", `"2024-02-29T10:00:00Z"`, "2024-02-29T10:00:00Z"),
		ok("escaped", `"2026-11-22T10:00:00\u005a"`, "2026-11-22T10:00:00Z"),
		{name: "absent", body: ev("time", omit), want: at(testNow, false, ev("time", omit))},
		{name: "null", body: ev("time", "null"), want: at(testNow, false, ev("time", "null"))},
		bad("word", `"yesterday"`, `must be an RFC 3339 timestamp, got "yesterday"`),
		bad("empty", `""`, `must be an RFC 3339 timestamp, got ""`),
		bad("no zone", `"2026-11-22T10:00:00"`, `must be an RFC 3339 timestamp, got "2026-11-22T10:00:00"`),
		bad("date only", `"2026-11-22"`, `must be an RFC 3339 timestamp`),
		bad("february 30", `"2026-02-30T10:00:00Z"`, `must be an RFC 3339 timestamp`),
		bad("hour 24", `"2026-11-22T24:00:00Z"`, `must be an RFC 3339 timestamp`),
		bad("unix seconds", `1763805600`, `must be a string (an RFC 3339 timestamp), got number`),
		bad("long", `"`+strings.Repeat("9", 100)+`"`, `(100 bytes in all)`),
		ok("last instant", `"9999-12-31T23:59:59.999999999Z"`, "9999-12-31T23:59:59.999999999Z"),
		ok("first instant", `"0001-01-01T00:00:00Z"`, "0001-01-01T00:00:00Z"),
		ok("year 9999 east of UTC", `"9999-12-31T23:59:59+23:59"`, "9999-12-31T00:00:59Z"),
		bad("year 10000 in UTC", `"9999-12-31T23:59:59-23:59"`,
			`"9999-12-31T23:59:59-23:59" is out of range: it falls in year 10000 in UTC, and times must lie in years 0001–9999 in UTC`),
		bad("year 0 in UTC", `"0001-01-01T00:00:00+00:01"`, `"0001-01-01T00:00:00+00:01" is out of range: it falls in year 0 in UTC`),
		bad("year -1 in UTC", `"0000-01-01T00:00:00+23:59"`, `is out of range: it falls in year -1 in UTC`),
		bad("offset hour 24", `"2026-11-22T10:00:00+24:00"`, `must be an RFC 3339 timestamp, got "2026-11-22T10:00:00+24:00"`),
		bad("comma fraction", `"2026-11-22T10:00:00,5Z"`, `must be an RFC 3339 timestamp`),
		{name: "future within skew", body: ev("time", `"2026-11-22T12:04:00Z"`), lim: Limits{MaxFutureSkew: 5 * time.Minute},
			want: at(utc("2026-11-22T12:04:00Z"), true, ev("time", `"2026-11-22T12:04:00Z"`))},
		{name: "future beyond skew", body: ev("time", `"2026-11-22T12:06:00Z"`), lim: Limits{MaxFutureSkew: 5 * time.Minute},
			errs: []Problem{{0, "time", "is 2026-11-22T12:06:00Z, more than 5m0s after the receive time 2026-11-22T12:00:00Z"}}},
		{name: "future without skew limit", body: ev("time", `"2036-11-22T12:00:00Z"`),
			want: at(utc("2036-11-22T12:00:00Z"), true, ev("time", `"2036-11-22T12:00:00Z"`))},
	})
}

func TestDecodeTimeNowIsUTC(t *testing.T) {
	now := time.Date(2026, 11, 22, 13, 0, 0, 0, time.FixedZone("CET", 3600))
	evs, err := Decode(MediaTypeCloudEvent, []byte(ev("time", omit)), now, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if got := evs[0].Time; got != now.UTC() || got.Location() != time.UTC || evs[0].TimeSet {
		t.Errorf("Time = %v (set %v), want %v unset", got, evs[0].TimeSet, now.UTC())
	}
}

func TestDecodeData(t *testing.T) {
	with := func(data json.RawMessage, raw string) []Event {
		e := baseEvent()
		e.Data = data
		return []Event{withRaw(e, raw)}
	}
	nested := `{ "value" : 12.5, "tags": ["a", {"b": null}], "n": {"deep": [1, 2e3, -0.5]} }`
	dataCase := func(name, value string, want json.RawMessage) decodeCase {
		return decodeCase{name: name, body: ev("data", value), want: with(want, ev("data", value))}
	}
	badData := func(name, value, msg string) decodeCase {
		return decodeCase{name: name, body: ev("data", value), errs: []Problem{{0, "data", msg}}}
	}
	dct := func(name, ctype, data string) decodeCase {
		body := ev("datacontenttype", ctype, "data", data)
		want := json.RawMessage(data)
		if data == "null" || data == omit {
			want = nil
		}
		return decodeCase{name: name, body: body, want: with(want, body)}
	}
	runCases(t, []decodeCase{
		dataCase("object", `{"value":1}`, json.RawMessage(`{"value":1}`)),
		dataCase("nested object kept exactly", nested, json.RawMessage(nested)),
		dataCase("empty object", `{}`, json.RawMessage(`{}`)),
		dataCase("null", `null`, nil),
		dataCase("absent", omit, nil),
		badData("array", `[1,2]`, "must be a JSON object or null, got array"),
		badData("string", `"hello"`, "must be a JSON object or null, got string"),
		badData("number", `12.5`, "must be a JSON object or null, got number"),
		badData("boolean", `false`, "must be a JSON object or null, got boolean"),
		dct("datacontenttype json", `"application/json"`, `{"a":1}`),
		dct("datacontenttype json charset", `"Application/JSON; charset=utf-8"`, `{"a":1}`),
		dct("datacontenttype +json", `"application/vnd.tally.usage+json"`, `{"a":1}`),
		dct("datacontenttype text without data", `"text/plain"`, omit),
		dct("datacontenttype text with null data", `"text/plain"`, "null"),
		dct("datacontenttype null", `null`, `{"a":1}`),
		{name: "datacontenttype text with data", body: ev("datacontenttype", `"text/plain"`),
			errs: []Problem{{0, "datacontenttype", `must be a JSON media type (application/json or a +json type) when data is present, got "text/plain"`}}},
		{name: "datacontenttype bare +json", body: ev("datacontenttype", `"+json"`),
			errs: []Problem{{0, "datacontenttype", `got "+json"`}}},
		{name: "datacontenttype number", body: ev("datacontenttype", `5`),
			errs: []Problem{{0, "datacontenttype", "must be a string, got number"}}},
		{name: "dataschema string", body: ev("dataschema", `"https://example.com/schema"`),
			want: with(json.RawMessage(`{"value":1}`), ev("dataschema", `"https://example.com/schema"`))},
		{name: "dataschema object", body: ev("dataschema", `{}`),
			errs: []Problem{{0, "dataschema", "must be a string, got object"}}},
		{name: "data_base64", body: ev("data", omit, "data_base64", `"aGVsbG8="`),
			errs: []Problem{{0, "data_base64", "binary data is not supported"}}},
		{name: "data_base64 null", body: ev("data_base64", `null`),
			want: with(json.RawMessage(`{"value":1}`), ev("data_base64", `null`))},
		{name: "extensions kept", body: ev("tenant", `"acme"`, "region", `{"x":[1,true,null]}`),
			want: with(json.RawMessage(`{"value":1}`), ev("tenant", `"acme"`, "region", `{"x":[1,true,null]}`))},
		{name: "too deep", body: ev("data", strings.Repeat(`{"a":`, maxDepth)+"1"+strings.Repeat("}", maxDepth)),
			errs: []Problem{{0, "", "exceeded the maximum nesting depth of 10000"}}},
		{name: "deep but allowed", body: ev("data", strings.Repeat(`{"a":`, maxDepth-1)+"1"+strings.Repeat("}", maxDepth-1)),
			lim: Limits{MaxDataDepth: maxDepth},
			want: with(json.RawMessage(strings.Repeat(`{"a":`, maxDepth-1)+"1"+strings.Repeat("}", maxDepth-1)),
				ev("data", strings.Repeat(`{"a":`, maxDepth-1)+"1"+strings.Repeat("}", maxDepth-1)))},
		dataCase("data at the default depth limit", nest(DefaultMaxDataDepth), json.RawMessage(nest(DefaultMaxDataDepth))),
		badData("data deeper than the default limit", nest(DefaultMaxDataDepth+1), "nests objects and arrays 33 levels deep, at most 32 allowed"),
		badData("data 9999 levels deep", nest(maxDepth-1), "nests objects and arrays 9999 levels deep, at most 32 allowed"),
		{name: "data depth limit set", body: ev("data", `{"a":[{"b":1}]}`), lim: Limits{MaxDataDepth: 2},
			errs: []Problem{{0, "data", "nests objects and arrays 3 levels deep, at most 2 allowed"}}},
		{name: "data depth of the last data member", body: ev("data", nest(40), "data", `{"a":1}`),
			want: with(json.RawMessage(`{"a":1}`), ev("data", nest(40), "data", `{"a":1}`))},
		{name: "extensions are not data", body: ev("ext", nest(40)),
			want: with(json.RawMessage(`{"value":1}`), ev("ext", nest(40)))},
		{name: "deep data in a batch", ct: MediaTypeCloudEventBatch, body: "[" + ev() + "," + ev("id", `"2"`, "data", nest(33)) + "]",
			errs: []Problem{{1, "data", "nests objects and arrays 33 levels deep"}}},
		{name: "deep data in NDJSON", ct: MediaTypeNDJSON, body: ev() + "\n" + ev("id", `"2"`, "data", nest(33)),
			errs: []Problem{{1, "data", "nests objects and arrays 33 levels deep"}}},
	})
}

// nest returns a data object in which objects and arrays nest depth
// levels deep.
func nest(depth int) string {
	var b strings.Builder
	for i := 1; i < depth; i++ {
		if i%2 == 0 {
			b.WriteString(`{"a":`)
		} else {
			b.WriteString(`[`)
		}
	}
	inner := strings.Builder{}
	for i := depth - 1; i >= 1; i-- {
		if i%2 == 0 {
			inner.WriteString(`}`)
		} else {
			inner.WriteString(`]`)
		}
	}
	return `{"x":` + b.String() + `1` + inner.String() + `}`
}

func TestDecodeDuplicateMembersLastWins(t *testing.T) {
	body := `{"specversion":"1.0","id":"first","source":"s","type":"t","subject":"u","id":"second","data":[1],"data":{"a":1}}`
	evs, err := Decode(MediaTypeCloudEvent, []byte(body), testNow, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if evs[0].ID != "second" || string(evs[0].Data) != `{"a":1}` {
		t.Errorf("ID %q, Data %s; want the last occurrences", evs[0].ID, evs[0].Data)
	}
	// encoding/json agrees.
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &m); err != nil || string(m["id"]) != `"second"` {
		t.Errorf("encoding/json: %v %s", err, m["id"])
	}
}

func TestDecodeSizeLimits(t *testing.T) {
	one := ev()
	batch := func(n int) string {
		evs := make([]string, n)
		for i := range evs {
			evs[i] = ev("id", fmt.Sprintf(`"e%d"`, i))
		}
		return "[" + strings.Join(evs, ",") + "]"
	}
	wantN := func(n int) []Event {
		var out []Event
		for i := range n {
			e := baseEvent()
			e.ID = fmt.Sprintf("e%d", i)
			out = append(out, withRaw(e, ev("id", fmt.Sprintf(`"e%d"`, i))))
		}
		return out
	}
	ndjson := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "%s\n\n", ev("id", fmt.Sprintf(`"e%d"`, i)))
		}
		return b.String()
	}
	runCases(t, []decodeCase{
		{name: "event at the size limit", body: one, lim: Limits{MaxEventBytes: len(one)}, want: []Event{withRaw(baseEvent(), one)}},
		{name: "event too large", body: one, lim: Limits{MaxEventBytes: len(one) - 1},
			errs: []Problem{{0, "", fmt.Sprintf("event is %d bytes long, at most %d allowed", len(one), len(one)-1)}}},
		{name: "default event size limit", body: ev("pad", `"`+strings.Repeat("x", 1<<20)+`"`),
			errs: []Problem{{0, "", "at most 1048576 allowed"}}},
		{name: "events at the count limit", ct: MediaTypeCloudEventBatch, body: batch(3), lim: Limits{MaxEvents: 3}, want: wantN(3)},
		{name: "too many events", ct: MediaTypeCloudEventBatch, body: batch(4), lim: Limits{MaxEvents: 3}, big: true,
			errs: []Problem{{-1, "", "request contains more than 3 events, at most 3 allowed"}}},
		{name: "too many events ndjson", ct: MediaTypeNDJSON, body: ndjson(4), lim: Limits{MaxEvents: 3}, big: true,
			errs: []Problem{{-1, "", "request contains more than 3 events, at most 3 allowed"}}},
		{name: "ndjson at the count limit", ct: MediaTypeNDJSON, body: ndjson(3), lim: Limits{MaxEvents: 3}, want: wantN(3)},
		{name: "too many events with other problems", ct: MediaTypeJSON, lim: Limits{MaxEvents: 2}, big: true,
			body: "[" + ev("id", omit) + "," + one + "," + one + "]",
			errs: []Problem{
				{-1, "", "request contains more than 2 events"},
				{0, "id", "required attribute is missing"},
			}},
		{name: "single event with MaxEvents 1", body: one, lim: Limits{MaxEvents: 1}, want: []Event{withRaw(baseEvent(), one)}},
	})
}

func TestDecodeEmpty(t *testing.T) {
	noEvents := []Problem{{-1, "", "request contains no events"}}
	var cases []decodeCase
	for _, ct := range []string{MediaTypeCloudEvent, MediaTypeCloudEventBatch, MediaTypeJSON, MediaTypeNDJSON} {
		cases = append(cases,
			decodeCase{name: ct + " empty", ct: ct, body: "", errs: noEvents},
			decodeCase{name: ct + " whitespace", ct: ct, body: " \r\n\t\n", errs: noEvents},
		)
	}
	cases = append(cases,
		decodeCase{name: "empty batch", ct: MediaTypeCloudEventBatch, body: "[]", errs: noEvents},
		decodeCase{name: "empty json array", ct: MediaTypeJSON, body: " [ \n ] ", errs: noEvents},
	)
	runCases(t, cases)
}

func TestDecodeMultipleProblems(t *testing.T) {
	body := "[" + strings.Join([]string{
		ev(),
		ev("id", `""`, "time", `"yesterday"`),
		ev("id", `"e2"`),
		`"not an event"`,
		ev("subject", "7", "data", "[]"),
	}, ",") + "]"
	runCases(t, []decodeCase{{name: "batch", ct: MediaTypeCloudEventBatch, body: body, errs: []Problem{
		{1, "id", "must not be empty"},
		{1, "time", `must be an RFC 3339 timestamp, got "yesterday"`},
		{3, "", "must be a JSON object, got string"},
		{4, "subject", "must be a string, got number"},
		{4, "data", "must be a JSON object or null, got array"},
	}}})
}

func TestDecodeProblemCap(t *testing.T) {
	var evs []string
	for range 150 {
		evs = append(evs, ev("id", omit))
	}
	_, err := Decode(MediaTypeNDJSON, []byte(strings.Join(evs, "\n")), testNow, Limits{})
	inv := problemsOf(t, nil, err)
	if len(inv.Problems) != MaxProblems {
		t.Fatalf("%d problems listed, want %d", len(inv.Problems), MaxProblems)
	}
	for i, p := range inv.Problems[:MaxProblems-1] {
		if p.Index != i || p.Field != "id" {
			t.Errorf("problem %d = %+v", i, p)
		}
	}
	last := inv.Problems[MaxProblems-1]
	if want := (Problem{Index: -1, Message: "51 more problems not listed"}); last != want {
		t.Errorf("last problem = %+v, want %+v", last, want)
	}

	// Exactly MaxProblems problems are all listed.
	_, err = Decode(MediaTypeNDJSON, []byte(strings.Join(evs[:MaxProblems], "\n")), testNow, Limits{})
	inv = problemsOf(t, nil, err)
	if len(inv.Problems) != MaxProblems || inv.Problems[MaxProblems-1].Index != MaxProblems-1 {
		t.Errorf("got %d problems, last %+v; want all %d", len(inv.Problems), inv.Problems[len(inv.Problems)-1], MaxProblems)
	}
}

func TestDecodeMalformed(t *testing.T) {
	one := ev()
	runCases(t, []decodeCase{
		{name: "single truncated", body: `{"specversion":"1.0","id":`,
			errs: []Problem{{0, "", "malformed JSON at byte offset 26: unexpected end of input, expected a JSON value"}}},
		{name: "single missing colon", body: `{"specversion" "1.0"}`,
			errs: []Problem{{0, "", `malformed JSON at byte offset 15: invalid character '"', expected ':' after an object key`}}},
		{name: "single trailing data", body: one + ` {}`,
			errs: []Problem{{-1, "", fmt.Sprintf("malformed JSON at byte offset %d: invalid character '{', expected the end of the request body", len(one)+1)}}},
		{name: "single garbage", body: `nope`,
			errs: []Problem{{-1, "", "malformed JSON at byte offset 1: invalid character 'o', expected 'u' (in literal null)"}}},
		{name: "single bare word", body: `hello`,
			errs: []Problem{{-1, "", "malformed JSON at byte offset 0: invalid character 'h', expected a JSON value"}}},
		{name: "single key not a string", body: `{id:"x"}`,
			errs: []Problem{{0, "", "malformed JSON at byte offset 1: invalid character 'i', expected a string for an object key"}}},
		{name: "bad number", body: ev("data", `{"v":01}`),
			errs: []Problem{{0, "", "invalid character '1', expected ',' or '}' after an object value"}}},
		{name: "bad number exponent", body: ev("data", `{"v":1e}`),
			errs: []Problem{{0, "", "invalid character '}', expected a digit in the exponent"}}},
		{name: "NaN", body: ev("data", `{"v":NaN}`),
			errs: []Problem{{0, "", "invalid character 'N', expected a JSON value"}}},
		{name: "batch element broken", ct: MediaTypeCloudEventBatch, body: "[" + one + `,{"id":}]`,
			errs: []Problem{{1, "", fmt.Sprintf("malformed JSON at byte offset %d: invalid character '}', expected a JSON value", len(one)+8)}}},
		{name: "batch problems before a broken element are kept", ct: MediaTypeCloudEventBatch,
			body: "[" + ev("id", "5") + `,{"id" 1}]`,
			errs: []Problem{
				{0, "id", "must be a string, got number"},
				{1, "", "expected ':' after an object key"},
			}},
		{name: "batch truncated", ct: MediaTypeCloudEventBatch, body: "[" + one,
			errs: []Problem{{-1, "", fmt.Sprintf("malformed JSON at byte offset %d: unexpected end of input, expected ',' or ']' after an array element", len(one)+1)}}},
		{name: "batch trailing comma", ct: MediaTypeCloudEventBatch, body: "[" + one + ",]",
			errs: []Problem{{-1, "", "invalid character ']', expected an event object"}}},
		{name: "batch missing comma", ct: MediaTypeJSON, body: "[" + one + " " + one + "]",
			errs: []Problem{{-1, "", "invalid character '{', expected ',' or ']' after an array element"}}},
		{name: "batch trailing data", ct: MediaTypeJSON, body: "[" + one + "]]",
			errs: []Problem{{-1, "", "invalid character ']', expected the end of the request body after the top-level value"}}},
		{name: "batch not closed element", ct: MediaTypeJSON, body: "[" + one + `, {"a": [1, 2}`,
			errs: []Problem{{1, "", "invalid character '}', expected ',' or ']' after an array element"}}},
		{name: "ndjson broken line", ct: MediaTypeNDJSON, body: one + "\n\n\n  " + `{"id" 1}` + "\n" + ev("id", "5"),
			errs: []Problem{
				{1, "", `malformed JSON on line 4, column 9: invalid character '1', expected ':' after an object key`},
				{2, "id", "must be a string, got number"},
			}},
		{name: "ndjson two objects on a line", ct: MediaTypeNDJSON, body: one + " " + one,
			errs: []Problem{{0, "", fmt.Sprintf("malformed JSON on line 1, column %d: invalid character '{', expected the end of the line after the event object", len(one)+2)}}},
		{name: "ndjson truncated line", ct: MediaTypeNDJSON, body: one + "\n" + `{"id":"x"` + "\n" + one,
			errs: []Problem{{1, "", "malformed JSON on line 2, column 10: unexpected end of input, expected ',' or '}' after an object value"}}},
		{name: "ndjson scalar lines", ct: MediaTypeNDJSON, body: "1\ntrue x\nnul",
			errs: []Problem{
				{0, "", "must be a JSON object, got number"},
				{1, "", "malformed JSON on line 2, column 6: invalid character 'x', expected the end of the line after the value"},
				{2, "", "malformed JSON on line 3, column 4: unexpected end of input, expected 'l' (in literal null)"},
			}},
		{name: "ndjson event split across lines", ct: MediaTypeNDJSON, body: "{\"specversion\":\"1.0\",\n\"id\":\"x\"}",
			errs: []Problem{
				{0, "", "malformed JSON on line 1, column 22: unexpected end of input"},
				{1, "", "malformed JSON on line 2, column 5: invalid character ':', expected the end of the line after the value"},
			}},
	})
}

func TestDecodeNDJSONBlankLines(t *testing.T) {
	one, two := ev(), ev("id", `"e2"`)
	e2 := baseEvent()
	e2.ID = "e2"
	body := "\n\r\n  \t\n" + one + "\r\n\n   \n\t" + two + "  \r\n\n"
	runCases(t, []decodeCase{{name: "blank lines", ct: MediaTypeNDJSON, body: body,
		want: []Event{withRaw(baseEvent(), one), withRaw(e2, two)}}})
}

func TestDecodeRawExact(t *testing.T) {
	// Whitespace inside an object, member order, escapes and extensions are
	// all kept; whitespace around an object is not part of it.
	a := "{ \"type\" : \"request\",\n\t\"subject\":\"s\\u00e9\", \"specversion\": \"1.0\",\"id\":\"a\",\"source\":\"x\\/y\",\"ext\":[1, 2 ],\n \"data\" : { \"v\" : 1 } }"
	b := `{"id":"b","specversion":"1.0","source":"x","type":"t","subject":"s","time":null}`
	want := []Event{
		{ID: "a", Source: "x/y", Type: "request", Subject: "sé", Time: testNow, Data: json.RawMessage(`{ "v" : 1 }`), Raw: json.RawMessage(a)},
		{ID: "b", Source: "x", Type: "t", Subject: "s", Time: testNow, Raw: json.RawMessage(b)},
	}
	runCases(t, []decodeCase{
		{name: "array", ct: MediaTypeJSON, body: " [\n  " + a + " ,\n\t" + b + "\n] \n", want: want},
		{name: "ndjson", ct: MediaTypeNDJSON, body: "  " + a[:0] + strings.ReplaceAll(a, "\n", " ") + " \t\r\n" + b,
			want: []Event{func() Event { e := want[0]; e.Raw = json.RawMessage(strings.ReplaceAll(a, "\n", " ")); return e }(), want[1]}},
		{name: "single", body: "\n\t" + a + "\n", want: want[:1]},
	})

	// Raw and Data alias the body but cannot be appended to over it.
	body := []byte("[" + ev() + "," + ev() + "]")
	evs, err := Decode(MediaTypeJSON, body, testNow, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	_ = append(evs[0].Raw, 'X')
	_ = append(evs[0].Data, 'X')
	if string(body) != "["+ev()+","+ev()+"]" {
		t.Errorf("appending to Raw or Data changed the body")
	}
}

func TestProblemStrings(t *testing.T) {
	_, err := Decode(MediaTypeJSON, []byte("["+ev("id", "5")+"]"), testNow, Limits{})
	if got, want := err.Error(), `invalid events: event 0 field "id": must be a string, got number`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestParseTimeFastAgreesWithTimeParse(t *testing.T) {
	for _, s := range []string{
		"2026-11-22T10:00:00Z", "2026-11-22T10:00:00.1Z", "2026-11-22T10:00:00.123456789Z",
		"2026-11-22T10:00:00.1234567891Z", "0000-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999+23:59",
		"2026-11-22T10:00:00-00:00", "2000-02-29T00:00:00Z", "1900-02-29T00:00:00Z", "2026-11-22t10:00:00z",
		"2026-11-22T10:00:60Z", "2026-11-22T10:60:00Z", "2026-11-22T10:00:00+24:00", "2026-11-22T10:00:00.Z",
		"2026-11-22T10:00:00,5Z", "2026-13-22T10:00:00Z", "2026-00-22T10:00:00Z", "2026-11-00T10:00:00Z",
		"+026-11-22T10:00:00Z", "2026-11-22T10:00:00+0100", "2026-11-22T10:00:00 Z",
	} {
		checkParseTime(t, s)
	}
	// Every day of years around the edges of the calendar arithmetic.
	for _, years := range [][2]int{{0, 2}, {99, 101}, {399, 401}, {1899, 1901}, {1968, 2104}, {2399, 2401}, {9998, 9999}} {
		for y := years[0]; y <= years[1]; y++ {
			for d := time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC); d.Year() == y; d = d.AddDate(0, 0, 1) {
				s := fmt.Sprintf("%04d-%02d-%02dT23:59:58.5-01:30", y, d.Month(), d.Day())
				if fast, ok := parseTimeFast([]byte(s)); !ok || !fast.Equal(d.Add(25*time.Hour+29*time.Minute+58*time.Second+500*time.Millisecond)) {
					t.Fatalf("parseTimeFast(%q) = %v, %v", s, fast, ok)
				}
			}
		}
	}
}

// checkParseTime checks that parseTime agrees with bounds.ParseTime, the
// parser of every other entry point, and parseTimeFast with time.Parse, on
// s.
func checkParseTime(t *testing.T, s string) {
	t.Helper()
	want, err := time.Parse(time.RFC3339Nano, s)
	bwant, berr := bounds.ParseTime(s)
	got, gerr := parseTime([]byte(s))
	if (gerr == nil) != (berr == nil) || gerr == nil && (!got.Equal(bwant) || got.Location() != time.UTC) {
		t.Errorf("parseTime(%q) = %v, %v; bounds.ParseTime = %v, %v", s, got, gerr, bwant, berr)
	}
	if fast, ok := parseTimeFast([]byte(s)); ok && (err != nil || !fast.Equal(want)) {
		t.Errorf("parseTimeFast(%q) = %v; time.Parse = %v, %v", s, fast, want, err)
	}
}

func TestPlain8(t *testing.T) {
	for c := range 256 {
		for pos := range 8 {
			b := []byte("abcdefgh")
			b[pos] = byte(c)
			x := uint64(0)
			for i := 7; i >= 0; i-- {
				x = x<<8 | uint64(b[i])
			}
			want := true
			for _, c := range b {
				want = want && strPlain[c]
			}
			if got := plain8(x); got != want {
				t.Fatalf("plain8(%q) = %v, want %v", b, got, want)
			}
		}
	}
	// Random words, biased towards the edges of the plain range.
	edges := []byte{0, 0x1f, 0x20, 0x21, '"', 0x23, 0x5b, '\\', 0x5d, 0x7f, 0x80, 0xff}
	r := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		var b [8]byte
		want := true
		for i := range b {
			if r.IntN(2) == 0 {
				b[i] = edges[r.IntN(len(edges))]
			} else {
				b[i] = byte(r.Uint32())
			}
			want = want && strPlain[b[i]]
		}
		if got := plain8(binary.LittleEndian.Uint64(b[:])); got != want {
			t.Fatalf("plain8(%q) = %v, want %v", b, got, want)
		}
	}
}

func TestDataOfMatchesDecode(t *testing.T) {
	for _, raw := range []string{
		`{"specversion":"1.0","id":"1","source":"s","type":"t","subject":"x","data":{"v":1}}`,
		`{"specversion":"1.0","id":"1","source":"s","type":"t","subject":"x","Data":{"v":1}}`,
		`{"specversion":"1.0","id":"1","source":"s","type":"t","subject":"x","data":null}`,
		`{"specversion":"1.0","id":"1","source":"s","type":"t","subject":"x"}`,
	} {
		evs, err := Decode(MediaTypeCloudEvent, []byte(raw), time.Unix(0, 0), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := DataOf([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(evs[0].Data) {
			t.Errorf("DataOf(%s) = %s, Decode gives %s", raw, got, evs[0].Data)
		}
	}
}
