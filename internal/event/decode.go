package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tally-metering/tally/internal/bounds"
)

// Default limits applied when a Limits field is zero (or negative).
const (
	DefaultMaxEventBytes = 1 << 20
	DefaultMaxIDBytes    = 256
	DefaultMaxDataDepth  = 32
)

// MaxProblems is the most Problems an InvalidError from Decode lists. When a
// request has more, the first MaxProblems-1 are listed and the last Problem
// (index -1) says how many more there were.
const MaxProblems = 100

// The media types Decode accepts.
const (
	MediaTypeCloudEvent      = "application/cloudevents+json"
	MediaTypeCloudEventBatch = "application/cloudevents-batch+json"
	MediaTypeJSON            = "application/json"
	MediaTypeNDJSON          = "application/x-ndjson"
	mediaTypeNDJSONAlt       = "application/ndjson"
)

const acceptedTypes = MediaTypeCloudEvent + ", " + MediaTypeCloudEventBatch + ", " +
	MediaTypeJSON + " or " + MediaTypeNDJSON

// format is how a request body holds its events.
type format int

const (
	formatOne    format = iota + 1 // exactly one event object
	formatBatch                    // an array of event objects
	formatJSON                     // one event object or an array of them
	formatNDJSON                   // one event object per line
)

// Decode parses an HTTP request body of the given Content-Type header value into events.
//
// The media type (case-insensitive; parameters such as charset are ignored)
// selects the framing:
//
//   - application/cloudevents+json: exactly one event object;
//   - application/cloudevents-batch+json: a JSON array of event objects;
//   - application/json: one event object or an array of them;
//   - application/x-ndjson (or application/ndjson): one event object per
//     line, blank lines ignored.
//
// Any other media type, or none, gives an error wrapping
// ErrUnsupportedMediaType. Otherwise either every event is valid and Decode
// returns them in request order, or it returns an *InvalidError listing
// every problem found in every event (at most MaxProblems entries); TooLarge
// is set when the request holds more than lim.MaxEvents events. A Problem's
// Index is the event's 0-based position in the request (-1 for the request
// as a whole) and Field the CloudEvents attribute concerned. Malformed JSON
// is reported with its byte offset (NDJSON: line and column); a JSON body
// cannot be read past it, but an NDJSON body goes on with the next line.
//
// Each event must be a CloudEvents 1.0 JSON object with specversion "1.0",
// non-empty string id (at most lim.MaxIDBytes bytes), source, type and
// subject (whose syntax bounds.CheckSubject defines); an optional RFC 3339
// time within bounds.MinTime and bounds.MaxTime (converted to UTC; when
// absent or null the event gets now and TimeSet false); an optional data
// member that is a JSON object or null; optional string datacontenttype (a
// JSON media type when data is present) and dataschema. Objects and arrays
// in data may nest at most lim.MaxDataDepth levels deep, data itself being
// level 1. As in the CloudEvents JSON format, a null attribute counts as
// absent. Binary data (data_base64) is rejected. Other members are
// extension attributes: they are accepted unchecked and kept in Raw. Each
// event may take at most lim.MaxEventBytes bytes.
//
// Decode is stricter than encoding/json in one way: strings must be valid
// UTF-8 (encoding/json silently replaces invalid bytes). Like
// encoding/json, it accepts an object with a repeated member name, and the
// last occurrence wins; unlike encoding/json's struct decoding, member names
// are matched case-sensitively, as CloudEvents requires ("ID" is an
// extension, not the id).
//
// Decode does not copy body: each event's Raw, and Data, are sub-slices of
// body (with capacity clipped to their length), so the caller must not
// modify body afterwards.
func Decode(contentType string, body []byte, now time.Time, lim Limits) ([]Event, error) {
	f, err := parseContentType(contentType)
	if err != nil {
		return nil, err
	}
	if lim.MaxEventBytes <= 0 {
		lim.MaxEventBytes = DefaultMaxEventBytes
	}
	if lim.MaxIDBytes <= 0 {
		lim.MaxIDBytes = DefaultMaxIDBytes
	}
	if lim.MaxDataDepth <= 0 {
		lim.MaxDataDepth = DefaultMaxDataDepth
	}
	d := decoder{now: now.UTC(), lim: lim, scratch: make([]byte, 0, 256)}
	// Size the result for events of at least 160 bytes: most requests need
	// no reallocation, and the waste is bounded by the body size.
	guess := len(body)/160 + 1
	if lim.MaxEvents > 0 && guess > lim.MaxEvents {
		guess = lim.MaxEvents
	}
	d.events = make([]Event, 0, guess)
	if f == formatNDJSON {
		d.ndjson(body)
	} else {
		d.json(body, f)
	}
	if err := d.err(); err != nil {
		return nil, err
	}
	return d.events, nil
}

// parseContentType maps a Content-Type header value to a format.
func parseContentType(contentType string) (format, error) {
	mt, _, _ := strings.Cut(contentType, ";")
	mt = strings.TrimSpace(mt)
	switch {
	case strings.EqualFold(mt, MediaTypeCloudEvent):
		return formatOne, nil
	case strings.EqualFold(mt, MediaTypeCloudEventBatch):
		return formatBatch, nil
	case strings.EqualFold(mt, MediaTypeJSON):
		return formatJSON, nil
	case strings.EqualFold(mt, MediaTypeNDJSON), strings.EqualFold(mt, mediaTypeNDJSONAlt):
		return formatNDJSON, nil
	case strings.TrimSpace(contentType) == "":
		return 0, fmt.Errorf("%w: the request has no Content-Type; send %s", ErrUnsupportedMediaType, acceptedTypes)
	}
	return 0, fmt.Errorf("%w %s; send %s", ErrUnsupportedMediaType, bounds.QuoteText(contentType), acceptedTypes)
}

// span is where an attribute's value lies in the scanned buffer. For a
// string it is the contents between the quotes; for other kinds the whole
// value.
type span struct {
	start, end int
	kind       byte
	esc        bool // a string holding escape sequences
}

// envelope is the members of an event object that Decode looks at.
type envelope struct {
	specversion, id, source, typ, subject, time   span
	datacontenttype, dataschema, data, dataBase64 span
	// dataDepth is how deep objects and arrays nest in data (1 for an
	// object holding only scalars).
	dataDepth int
}

// event scans the object at s.pos (which must hold '{'), recording the
// members of interest in env.
func (s *scanner) event(env *envelope) bool {
	if !s.enter() {
		return false
	}
	s.pos++
	s.skipSpace()
	if s.pos < len(s.buf) && s.buf[s.pos] == '}' {
		s.pos++
		s.depth--
		return true
	}
	for {
		s.skipSpace()
		if s.pos >= len(s.buf) || s.buf[s.pos] != '"' {
			return s.fail(s.pos, "a string for an object key")
		}
		ks, ke, kesc, ok := s.str()
		if !ok {
			return false
		}
		s.skipSpace()
		if s.pos >= len(s.buf) || s.buf[s.pos] != ':' {
			return s.fail(s.pos, "':' after an object key")
		}
		s.pos++
		key := s.buf[ks:ke]
		if kesc {
			key = unescape(nil, s.buf[ks-1:ke+1])
		}
		var sp *span
		switch string(key) {
		case "specversion":
			sp = &env.specversion
		case "id":
			sp = &env.id
		case "source":
			sp = &env.source
		case "type":
			sp = &env.typ
		case "subject":
			sp = &env.subject
		case "time":
			sp = &env.time
		case "datacontenttype":
			sp = &env.datacontenttype
		case "dataschema":
			sp = &env.dataschema
		case "data":
			sp = &env.data
		case "data_base64":
			sp = &env.dataBase64
		}
		if sp == nil {
			if _, ok := s.value(); !ok {
				return false
			}
		} else {
			s.skipSpace()
			start := s.pos
			if sp == &env.data {
				s.peak = s.depth
			}
			if s.pos < len(s.buf) && s.buf[s.pos] == '"' {
				cs, ce, esc, ok := s.str()
				if !ok {
					return false
				}
				*sp = span{start: cs, end: ce, kind: kindString, esc: esc}
			} else {
				kind, ok := s.value()
				if !ok {
					return false
				}
				*sp = span{start: start, end: s.pos, kind: kind}
				if sp == &env.data {
					env.dataDepth = s.peak - s.depth
				}
			}
		}
		s.skipSpace()
		if s.pos >= len(s.buf) {
			return s.fail(s.pos, "',' or '}' after an object value")
		}
		switch s.buf[s.pos] {
		case ',':
			s.pos++
		case '}':
			s.pos++
			s.depth--
			return true
		default:
			return s.fail(s.pos, "',' or '}' after an object value")
		}
	}
}

// unescape appends the contents of the quoted JSON string q, which the
// scanner has validated, to dst.
func unescape(dst, q []byte) []byte {
	var s string
	if err := json.Unmarshal(q, &s); err != nil {
		// Unreachable: q was validated by the scanner.
		panic("event: unescape of validated string failed: " + err.Error())
	}
	return append(dst, s...)
}

// decoder holds the state of one Decode call.
type decoder struct {
	now    time.Time
	lim    Limits
	events []Event

	probs   []Problem // the first MaxProblems problems
	nprobs  int       // problems found, listed or not
	tooMany *Problem  // set when the request holds too many events

	// line is the current NDJSON line number (0 for other formats) and col
	// the byte offset of the scanned text in that line.
	line, col int

	env     envelope
	scratch []byte
}

// problem records a problem, formatting its message only if it is listed.
func (d *decoder) problem(idx int, field, format string, args ...any) {
	d.nprobs++
	if len(d.probs) < MaxProblems {
		d.probs = append(d.probs, Problem{Index: idx, Field: field, Message: fmt.Sprintf(format, args...)})
	}
}

// malformed records the syntax error of s as a problem of event idx.
func (d *decoder) malformed(idx int, s *scanner) {
	if len(d.probs) >= MaxProblems {
		d.nprobs++ // not listed: skip formatting
		return
	}
	if d.line > 0 {
		d.problem(idx, "", "malformed JSON on line %d, column %d: %s", d.line, d.col+s.err.off+1, s.message())
	} else {
		d.problem(idx, "", "malformed JSON at byte offset %d: %s", s.err.off, s.message())
	}
}

// tooManyEvents records that the request holds more than lim.MaxEvents
// events.
func (d *decoder) tooManyEvents() {
	d.tooMany = &Problem{
		Index:   -1,
		Message: fmt.Sprintf("request contains more than %d events, at most %d allowed", d.lim.MaxEvents, d.lim.MaxEvents),
	}
}

// err returns the *InvalidError for the problems found, or nil.
func (d *decoder) err() error {
	total := d.nprobs
	probs := d.probs
	if d.tooMany != nil {
		probs = append([]Problem{*d.tooMany}, probs...)
		total++
	}
	if total == 0 {
		return nil
	}
	if total > MaxProblems {
		probs = append(probs[:MaxProblems-1], Problem{
			Index:   -1,
			Message: fmt.Sprintf("%d more problems not listed", total-(MaxProblems-1)),
		})
	}
	return &InvalidError{TooLarge: d.tooMany != nil, Problems: probs}
}

// json decodes a body of one event object and/or an array of them.
func (d *decoder) json(body []byte, f format) {
	s := scanner{buf: body}
	s.skipSpace()
	if s.pos == len(body) {
		d.problem(-1, "", "request contains no events")
		return
	}
	switch c := body[s.pos]; {
	case c == '{' && f != formatBatch:
		if !d.event(&s, 0, false) {
			return
		}
	case c == '[' && f != formatOne:
		if !d.array(&s) {
			return
		}
	default:
		kind, ok := s.value()
		if !ok {
			d.malformed(-1, &s)
			return
		}
		switch f {
		case formatOne:
			hint := ""
			if kind == kindArray {
				hint = " (send a batch as " + MediaTypeCloudEventBatch + ")"
			}
			d.problem(-1, "", "%s requires one JSON event object, got %s%s", MediaTypeCloudEvent, kindName(kind), hint)
		case formatBatch:
			d.problem(-1, "", "%s requires a JSON array of event objects, got %s", MediaTypeCloudEventBatch, kindName(kind))
		default:
			d.problem(-1, "", "the request body must be a JSON event object or an array of them, got %s", kindName(kind))
		}
	}
	s.skipSpace()
	if s.pos < len(body) {
		s.fail(s.pos, "the end of the request body after the top-level value")
		d.malformed(-1, &s)
	}
}

// array decodes the array of events at s.pos. It reports whether the array
// was scanned whole.
func (d *decoder) array(s *scanner) bool {
	if !s.enter() {
		d.malformed(-1, s)
		return false
	}
	s.pos++
	s.skipSpace()
	if s.pos < len(s.buf) && s.buf[s.pos] == ']' {
		s.pos++
		d.problem(-1, "", "request contains no events")
		return true
	}
	for idx := 0; ; idx++ {
		if d.lim.MaxEvents > 0 && idx >= d.lim.MaxEvents {
			d.tooManyEvents()
			return false
		}
		s.skipSpace()
		if s.pos < len(s.buf) && s.buf[s.pos] == '{' {
			if !d.event(s, idx, false) {
				return false
			}
		} else {
			start := s.pos
			kind, ok := s.value()
			if !ok {
				if s.err.off == start {
					// Not even the start of a value: the array is broken.
					s.err.what = "an event object"
					d.malformed(-1, s)
				} else {
					d.malformed(idx, s)
				}
				return false
			}
			d.problem(idx, "", "must be a JSON object, got %s", kindName(kind))
		}
		s.skipSpace()
		if s.pos >= len(s.buf) {
			s.fail(s.pos, "',' or ']' after an array element")
			d.malformed(-1, s)
			return false
		}
		switch s.buf[s.pos] {
		case ',':
			s.pos++
		case ']':
			s.pos++
			s.depth--
			return true
		default:
			s.fail(s.pos, "',' or ']' after an array element")
			d.malformed(-1, s)
			return false
		}
	}
}

// ndjson decodes a body of one event object per line.
func (d *decoder) ndjson(body []byte) {
	idx := 0
	for off, lineNo := 0, 1; off < len(body); lineNo++ {
		end := bytes.IndexByte(body[off:], '\n')
		if end < 0 {
			end = len(body)
		} else {
			end += off
		}
		line := body[off:end]
		off = end + 1
		a, b := 0, len(line)
		for a < b && isSpace(line[a]) {
			a++
		}
		for b > a && isSpace(line[b-1]) {
			b--
		}
		if a == b {
			continue
		}
		if d.lim.MaxEvents > 0 && idx >= d.lim.MaxEvents {
			d.tooManyEvents()
			return
		}
		d.line, d.col = lineNo, a
		s := scanner{buf: line[a:b:b]}
		if s.buf[0] == '{' {
			d.event(&s, idx, true)
		} else {
			kind, ok := s.value()
			switch {
			case !ok:
				d.malformed(idx, &s)
			case s.pos < len(s.buf):
				s.skipSpace()
				s.fail(s.pos, "the end of the line after the value")
				d.malformed(idx, &s)
			default:
				d.problem(idx, "", "must be a JSON object, got %s", kindName(kind))
			}
		}
		idx++
	}
	if idx == 0 {
		d.line = 0
		d.problem(-1, "", "request contains no events")
	}
}

// event decodes the event object at s.pos as event idx of the request. It
// reports whether the object was syntactically valid (and so whether
// scanning may go on after it); problems with its contents are recorded.
// With wholeLine, the object must be all that is left in s (an NDJSON line).
func (d *decoder) event(s *scanner, idx int, wholeLine bool) bool {
	start := s.pos
	d.env = envelope{}
	if !s.event(&d.env) {
		d.malformed(idx, s)
		return false
	}
	end := s.pos
	if wholeLine {
		s.skipSpace()
		if s.pos < len(s.buf) {
			s.fail(s.pos, "the end of the line after the event object")
			d.malformed(idx, s)
			return false
		}
	}
	d.build(idx, s.buf, start, end)
	return true
}

// build checks the envelope of event idx, found in buf[start:end], and
// appends the event to d.events when the request has no problems so far.
func (d *decoder) build(idx int, buf []byte, start, end int) {
	env := &d.env
	raw := buf[start:end:end]
	if len(raw) > d.lim.MaxEventBytes {
		d.problem(idx, "", "event is %d bytes long, at most %d allowed", len(raw), d.lim.MaxEventBytes)
	}

	switch sp := env.specversion; sp.kind {
	case kindAbsent, kindNull:
		d.problem(idx, "specversion", "required attribute is missing")
	case kindString:
		if sp.esc || string(buf[sp.start:sp.end]) != "1.0" {
			if v := d.stringValue(buf, sp); v != "1.0" {
				d.problem(idx, "specversion", `must be "1.0", got %s`, bounds.QuoteText(v))
			}
		}
	default:
		d.problem(idx, "specversion", "must be a string, got %s", kindName(sp.kind))
	}

	// The four required strings are gathered in scratch and then made into
	// one string, so that an event costs one allocation for all of them.
	d.scratch = d.scratch[:0]
	ok := d.appendRequired(idx, "id", buf, env.id)
	idEnd := len(d.scratch)
	ok = d.appendRequired(idx, "source", buf, env.source) && ok
	sourceEnd := len(d.scratch)
	ok = d.appendRequired(idx, "type", buf, env.typ) && ok
	typeEnd := len(d.scratch)
	subjectOK := d.appendRequired(idx, "subject", buf, env.subject)
	ok = subjectOK && ok
	if idEnd > d.lim.MaxIDBytes {
		d.problem(idx, "id", "is %d bytes long, at most %d allowed", idEnd, d.lim.MaxIDBytes)
	}

	t, timeSet := d.now, false
	switch sp := env.time; sp.kind {
	case kindAbsent, kindNull:
	case kindString:
		v := buf[sp.start:sp.end]
		if sp.esc {
			v = unescape(nil, buf[sp.start-1:sp.end+1])
		}
		var err error
		if t, err = parseTime(v); err != nil {
			if errors.Is(err, bounds.ErrTimeRange) {
				d.problem(idx, "time", "%v", err)
			} else {
				d.problem(idx, "time", "must be an RFC 3339 timestamp, got %s", bounds.QuoteText(string(v)))
			}
			break
		}
		timeSet = true
		if d.lim.MaxFutureSkew > 0 && t.Sub(d.now) > d.lim.MaxFutureSkew {
			d.problem(idx, "time", "is %s, more than %s after the receive time %s",
				t.Format(time.RFC3339Nano), d.lim.MaxFutureSkew, d.now.Format(time.RFC3339Nano))
		}
	default:
		d.problem(idx, "time", "must be a string (an RFC 3339 timestamp), got %s", kindName(sp.kind))
	}

	var data json.RawMessage
	switch sp := env.data; sp.kind {
	case kindAbsent, kindNull:
	case kindObject:
		data = buf[sp.start:sp.end:sp.end]
		if env.dataDepth > d.lim.MaxDataDepth {
			d.problem(idx, "data", "nests objects and arrays %d levels deep, at most %d allowed", env.dataDepth, d.lim.MaxDataDepth)
		}
	default:
		d.problem(idx, "data", "must be a JSON object or null, got %s", kindName(sp.kind))
	}

	switch sp := env.datacontenttype; sp.kind {
	case kindAbsent, kindNull:
	case kindString:
		if env.data.kind != kindAbsent && env.data.kind != kindNull {
			var v []byte
			if sp.esc {
				v = unescape(nil, buf[sp.start-1:sp.end+1])
			} else {
				v = buf[sp.start:sp.end]
			}
			if !isJSONMediaType(v) {
				d.problem(idx, "datacontenttype", "must be a JSON media type (application/json or a +json type) when data is present, got %s", bounds.QuoteText(string(v)))
			}
		}
	default:
		d.problem(idx, "datacontenttype", "must be a string, got %s", kindName(sp.kind))
	}

	switch sp := env.dataschema; sp.kind {
	case kindAbsent, kindNull, kindString:
	default:
		d.problem(idx, "dataschema", "must be a string, got %s", kindName(sp.kind))
	}

	if k := env.dataBase64.kind; k != kindAbsent && k != kindNull {
		d.problem(idx, "data_base64", "binary data is not supported, send data as a JSON object")
	}

	if !ok || d.nprobs > 0 {
		// The request will be rejected: don't build the event, but list
		// what is wrong with its subject.
		if subjectOK {
			d.checkSubject(idx, string(d.scratch[typeEnd:]))
		}
		return
	}
	strs := string(d.scratch)
	// Checked on the string the event keeps, so that a valid subject
	// costs no allocation of its own.
	if !d.checkSubject(idx, strs[typeEnd:]) {
		return
	}
	d.events = append(d.events, Event{
		ID:      strs[:idEnd],
		Source:  strs[idEnd:sourceEnd],
		Type:    strs[sourceEnd:typeEnd],
		Subject: strs[typeEnd:],
		Time:    t,
		TimeSet: timeSet,
		Data:    data,
		Raw:     raw,
	})
}

// checkSubject checks the syntax of event idx's subject, which is one for
// every entry point (bounds.CheckSubject), and reports whether it is valid.
func (d *decoder) checkSubject(idx int, subject string) bool {
	if err := bounds.CheckSubject(subject); err != nil {
		d.problem(idx, "subject", "%v", err)
		return false
	}
	return true
}

// appendRequired checks the required string attribute name of event idx
// and appends its value to d.scratch. It reports whether the value is
// valid.
func (d *decoder) appendRequired(idx int, name string, buf []byte, sp span) bool {
	switch sp.kind {
	case kindString:
	case kindAbsent, kindNull:
		d.problem(idx, name, "required attribute is missing")
		return false
	default:
		d.problem(idx, name, "must be a string, got %s", kindName(sp.kind))
		return false
	}
	n := len(d.scratch)
	if sp.esc {
		d.scratch = unescape(d.scratch, buf[sp.start-1:sp.end+1])
	} else {
		d.scratch = append(d.scratch, buf[sp.start:sp.end]...)
	}
	if len(d.scratch) == n {
		d.problem(idx, name, "must not be empty")
		return false
	}
	return true
}

// stringValue returns the value of the string at sp.
func (d *decoder) stringValue(buf []byte, sp span) string {
	if sp.esc {
		return string(unescape(nil, buf[sp.start-1:sp.end+1]))
	}
	return string(buf[sp.start:sp.end])
}

// isJSONMediaType reports whether the media type mt (parameters allowed) is
// application/json or has a +json suffix.
func isJSONMediaType(mt []byte) bool {
	if string(mt) == MediaTypeJSON {
		return true
	}
	if i := bytes.IndexByte(mt, ';'); i >= 0 {
		mt = mt[:i]
	}
	mt = bytes.TrimSpace(mt)
	if bytes.EqualFold(mt, []byte(MediaTypeJSON)) {
		return true
	}
	slash := bytes.IndexByte(mt, '/')
	return slash > 0 && len(mt)-slash-1 > len("+json") &&
		bytes.EqualFold(mt[len(mt)-len("+json"):], []byte("+json"))
}

// parseTime parses an RFC 3339 timestamp within the bounds every entry
// point keeps (bounds.ParseTime) and returns it in UTC. Timestamps of the
// usual shape and in range are parsed here without allocating; others are
// left to bounds.ParseTime, whose error wraps bounds.ErrTimeRange for a
// well-formed time out of range.
func parseTime(b []byte) (time.Time, error) {
	if t, ok := parseTimeFast(b); ok && bounds.InRange(t) {
		return t, nil
	}
	return bounds.ParseTime(string(b))
}

// parseTimeFast parses timestamps of the form
// YYYY-MM-DDTHH:MM:SS[.F{1,9}](Z|±HH:MM) with every field in range, which
// time.Parse(time.RFC3339Nano, ...) accepts with the same result. It
// reports false for anything else, valid or not.
func parseTimeFast(b []byte) (time.Time, bool) {
	if len(b) < 20 || b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' {
		return time.Time{}, false
	}
	year, ok1 := digits(b[0:4])
	month, ok2 := digits(b[5:7])
	day, ok3 := digits(b[8:10])
	hour, ok4 := digits(b[11:13])
	minute, ok5 := digits(b[14:16])
	sec, ok6 := digits(b[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) ||
		month < 1 || month > 12 || day < 1 || day > daysIn(month, year) ||
		hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	i, nsec := 19, 0
	if b[i] == '.' {
		i++
		n := 0
		for i < len(b) && isDigit(b[i]) {
			if n == 9 {
				return time.Time{}, false
			}
			nsec = nsec*10 + int(b[i]-'0')
			n++
			i++
		}
		if n == 0 {
			return time.Time{}, false
		}
		for ; n < 9; n++ {
			nsec *= 10
		}
	}
	offset := 0
	switch rest := b[i:]; {
	case len(rest) == 1 && rest[0] == 'Z':
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		oh, ok1 := digits(rest[1:3])
		om, ok2 := digits(rest[4:6])
		if !ok1 || !ok2 || oh > 23 || om > 59 {
			return time.Time{}, false
		}
		offset = oh*3600 + om*60
		if rest[0] == '-' {
			offset = -offset
		}
	default:
		return time.Time{}, false
	}
	unix := int64(daysFromCivil(year, month, day))*86400 + int64(hour*3600+minute*60+sec-offset)
	return time.Unix(unix, int64(nsec)).UTC(), true
}

// daysFromCivil returns the number of days from 1970-01-01 to the given
// proleptic Gregorian date (Howard Hinnant's days_from_civil algorithm).
func daysFromCivil(y, m, d int) int {
	if m <= 2 {
		y--
	}
	era := y
	if era < 0 {
		era -= 399
	}
	era /= 400
	yoe := y - era*400 // [0, 399]
	mp := m - 3        // March is month 0
	if mp < 0 {
		mp += 12
	}
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

// digits parses a run of ASCII digits.
func digits(b []byte) (int, bool) {
	n := 0
	for _, c := range b {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// CheckContentType returns the error Decode would give for a Content-Type it
// does not decode (wrapping ErrUnsupportedMediaType), or nil, so that a
// server can refuse a request before reading its body.
func CheckContentType(contentType string) error {
	_, err := parseContentType(contentType)
	return err
}
