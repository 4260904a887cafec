package main

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tally-metering/tally/internal/billing"
	"github.com/tally-metering/tally/internal/bounds"
	"github.com/tally-metering/tally/internal/event"
)

// importKind is what one input line holds.
type importKind string

const (
	kindCustomer     importKind = "customer"
	kindEvent        importKind = "event"
	kindSubscription importKind = "subscription"
)

// importPhases is the order in which kinds are imported, whatever the
// order of the files and lines: customers, then their events, then their
// subscriptions, so that a subscription whose past periods are due is
// finalized with its usage already there.
var importPhases = []importKind{kindCustomer, kindEvent, kindSubscription}

// maxImportLine is the longest input line (an event may take 1 MiB).
const maxImportLine = 2 << 20

// importLine is one line (NDJSON) or record (CSV) of an input file.
type importLine struct {
	no int // 1-based line number where it starts
	// last is the line it ends on: a CSV record's quoted field may hold
	// line breaks.
	last int
	end  int64 // byte offset just after it: where a resumed read starts
	// kind is what the line holds; "" when that can't be told (err says
	// why).
	kind importKind
	// text is an NDJSON line; fields a CSV record, by header name.
	text   []byte
	fields map[string]string
	err    error
}

// importFile is an input file: NDJSON (.ndjson, .jsonl, .json, or anything
// starting with '{'), whose lines say their kind, or CSV, one kind per
// file, which its header row tells.
type importFile struct {
	path string
	csv  bool
	// header is a CSV file's header row and kind the kind it tells.
	header []string
	kind   importKind
	size   int64
	mod    time.Time
}

// openImportFile looks at path: its format and, for CSV, its header.
func openImportFile(path string) (*importFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return nil, fmt.Errorf("%s: is a directory", path)
	}
	in := &importFile{path: path, size: st.Size(), mod: st.ModTime()}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".ndjson", ".jsonl", ".json":
	case ".csv":
		in.csv = true
	default:
		// Sniff: NDJSON starts with an object.
		head := make([]byte, 512)
		n, _ := io.ReadFull(f, head)
		in.csv = len(bytes.TrimSpace(head[:n])) > 0 && bytes.TrimSpace(head[:n])[0] != '{'
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return nil, err
		}
	}
	if in.csv {
		r := csv.NewReader(bufio.NewReader(f))
		r.FieldsPerRecord = -1
		h, err := r.Read()
		if err == io.EOF {
			return in, nil // empty: nothing to import
		}
		if err != nil {
			return nil, fmt.Errorf("%s:1: header: %w", path, err)
		}
		for i := range h {
			h[i] = strings.TrimSpace(strings.TrimPrefix(h[i], "\ufeff"))
		}
		in.header = h
		if in.kind, err = csvKind(h); err != nil {
			return nil, fmt.Errorf("%s:1: %w", path, err)
		}
	}
	return in, nil
}

// csvKind tells a CSV file's kind from its header's columns.
func csvKind(h []string) (importKind, error) {
	has := func(c string) bool { return slices.Contains(h, c) }
	seen := map[string]bool{}
	for _, c := range h {
		if c == "" {
			return "", errors.New("header: a column has no name")
		}
		if seen[c] {
			return "", fmt.Errorf("header: column %q is named twice", c)
		}
		seen[c] = true
	}
	var k importKind
	switch {
	case has("id") && has("type") && has("subject"):
		k = kindEvent
	case has("customer") && has("plan"):
		k = kindSubscription
	case has("key") && has("currency"):
		k = kindCustomer
	default:
		return "", fmt.Errorf("header: can't tell what the file holds from its columns %q: customers have key,name,currency; subscriptions customer,plan,start; events id,source,type,subject,time", h)
	}
	for _, c := range h {
		if !csvColumnKnown(k, c) {
			return "", fmt.Errorf("header: column %q is not a column of a %s file (see docs/import.md)", c, k)
		}
	}
	return k, nil
}

func csvColumnKnown(k importKind, c string) bool {
	switch k {
	case kindCustomer:
		return slices.Contains([]string{"key", "name", "email", "currency", "subjects", "createdAt"}, c) || strings.HasPrefix(c, "metadata.") && len(c) > len("metadata.")
	case kindSubscription:
		return slices.Contains([]string{"customer", "plan", "planVersion", "start", "billingAnchor", "timeZone"}, c)
	case kindEvent:
		return slices.Contains([]string{"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema", "data"}, c) || strings.HasPrefix(c, "data.") && len(c) > len("data.")
	}
	return false
}

// lines calls fn for each line of the file from byte offset from (a line
// start; 0 or an end recorded before), numbered from fromLine+1, until fn
// returns false or an error. Blank lines are skipped.
func (in *importFile) lines(from int64, fromLine int, fn func(importLine) (bool, error)) error {
	f, err := os.Open(in.path)
	if err != nil {
		return err
	}
	defer f.Close()
	if in.csv {
		return in.csvLines(f, from, fromLine, fn)
	}
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return err
	}
	br := bufio.NewReaderSize(f, 64<<10)
	off, no := from, fromLine
	for {
		line, n, long, err := readLine(br)
		if n == 0 && err == io.EOF {
			return nil
		}
		if err != nil && err != io.EOF {
			return fmt.Errorf("%s: read: %w", in.path, err)
		}
		off += int64(n)
		no++
		l := importLine{no: no, last: no, end: off}
		switch trimmed := bytes.TrimSpace(line); {
		case long:
			l.err = fmt.Errorf("line longer than %d bytes", maxImportLine)
		case len(trimmed) == 0:
			continue
		default:
			l.text = trimmed
			l.kind, l.err = ndjsonKind(trimmed)
		}
		if ok, err := fn(l); err != nil || !ok {
			return err
		}
	}
}

// readLine reads one line (without its newline) and the bytes it took,
// newline included; a line over maxImportLine is skipped to its end and
// reported as long.
func readLine(br *bufio.Reader) (line []byte, n int, long bool, err error) {
	var buf []byte
	for {
		chunk, err := br.ReadSlice('\n')
		n += len(chunk)
		if !long {
			if len(buf)+len(chunk) > maxImportLine+1 {
				long, buf = true, nil
			} else {
				buf = append(buf, chunk...)
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		return bytes.TrimSuffix(buf, []byte("\n")), n, long, err
	}
}

// ndjsonKind tells an NDJSON line's kind: its "kind" member, or event for
// a CloudEvent without one.
func ndjsonKind(line []byte) (importKind, error) {
	var probe struct {
		Kind        *string         `json:"kind"`
		SpecVersion json.RawMessage `json:"specversion"`
	}
	if err := json.Unmarshal(line, &probe); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return "", fmt.Errorf("not a JSON object (at byte %d: %v)", se.Offset, err)
		}
		return "", fmt.Errorf("not a JSON object: %v", err)
	}
	if probe.Kind == nil {
		if probe.SpecVersion != nil {
			return kindEvent, nil
		}
		return "", errors.New(`kind: missing; say "kind":"customer", "subscription" or "event" (a CloudEvent with specversion needs none)`)
	}
	switch k := importKind(*probe.Kind); k {
	case kindCustomer, kindSubscription, kindEvent:
		return k, nil
	}
	return "", fmt.Errorf("kind: %q is not customer, subscription or event", *probe.Kind)
}

// csvLines reads CSV records from offset from (past the header when 0).
func (in *importFile) csvLines(f *os.File, from int64, fromLine int, fn func(importLine) (bool, error)) error {
	if in.header == nil {
		return nil
	}
	r := csv.NewReader(bufio.NewReader(f))
	r.FieldsPerRecord = -1
	base, baseLine := int64(0), 0
	if from == 0 {
		if _, err := r.Read(); err != nil {
			return fmt.Errorf("%s:1: header: %w", in.path, err)
		}
	} else {
		if _, err := f.Seek(from, io.SeekStart); err != nil {
			return err
		}
		r = csv.NewReader(bufio.NewReader(f))
		r.FieldsPerRecord = -1
		base, baseLine = from, fromLine
	}
	for {
		rec, err := r.Read()
		if err == io.EOF {
			return nil
		}
		l := importLine{end: base + r.InputOffset(), kind: in.kind}
		if err == nil {
			line, _ := r.FieldPos(0)
			l.no = baseLine + line
			l.last = l.no
			for _, f := range rec {
				l.last += strings.Count(f, "\n")
			}
		}
		var pe *csv.ParseError
		switch {
		case errors.As(err, &pe):
			l.no, l.last = baseLine+pe.StartLine, baseLine+pe.Line
			l.err = fmt.Errorf("not a CSV record: %v", pe.Err)
		case err != nil:
			return fmt.Errorf("%s: read: %w", in.path, err)
		case len(rec) == 1 && strings.TrimSpace(rec[0]) == "":
			continue
		case len(rec) != len(in.header):
			l.err = fmt.Errorf("%d fields, the header has %d", len(rec), len(in.header))
		default:
			l.fields = make(map[string]string, len(rec))
			for i, v := range rec {
				if v = strings.TrimSpace(v); v != "" {
					l.fields[in.header[i]] = v
				}
			}
		}
		if ok, err := fn(l); err != nil || !ok {
			return err
		}
	}
}

// customerLine is an NDJSON customer line: the API's body plus its kind.
type customerLine struct {
	Kind string `json:"kind"`
	billing.CustomerInput
}

// subscriptionLine is an NDJSON subscription line.
type subscriptionLine struct {
	Kind string `json:"kind"`
	billing.SubscriptionInput
}

// strictJSON decodes an object into v, refusing unknown members.
func strictJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("unexpected data after the JSON object")
	}
	return nil
}

// customer reads a customer line and checks it as the API would (all but
// the clock).
func (l importLine) customer() (billing.CustomerInput, error) {
	var in billing.CustomerInput
	if l.fields != nil {
		f := l.fields
		in = billing.CustomerInput{Key: f["key"], Name: f["name"], Email: f["email"], Currency: f["currency"]}
		if v := f["subjects"]; v != "" {
			if strings.HasPrefix(v, "[") {
				if err := json.Unmarshal([]byte(v), &in.Subjects); err != nil {
					return in, fmt.Errorf("subjects: %q is not a JSON array of strings", v)
				}
			} else {
				for _, s := range strings.Split(v, "|") {
					in.Subjects = append(in.Subjects, strings.TrimSpace(s))
				}
			}
		}
		if v := f["createdAt"]; v != "" {
			t, err := bounds.ParseTime(v)
			if err != nil {
				return in, fmt.Errorf("createdAt: %w", err)
			}
			in.CreatedAt = &t
		}
		for k, v := range f {
			if name, ok := strings.CutPrefix(k, "metadata."); ok {
				if in.Metadata == nil {
					in.Metadata = map[string]string{}
				}
				in.Metadata[name] = v
			}
		}
	} else {
		var cl customerLine
		if err := strictJSON(l.text, &cl); err != nil {
			return in, err
		}
		in = cl.CustomerInput
		if in.CreatedAt != nil {
			if err := bounds.CheckTime(*in.CreatedAt); err != nil {
				return in, fmt.Errorf("createdAt: %w", err)
			}
		}
	}
	if err := in.Validate(); err != nil {
		return in, err
	}
	return in, nil
}

// subscription reads a subscription line; start is required, so that the
// subscription is found again by (customer, plan, start) on a rerun.
func (l importLine) subscription() (billing.SubscriptionInput, error) {
	var in billing.SubscriptionInput
	if l.fields != nil {
		f := l.fields
		in = billing.SubscriptionInput{Customer: f["customer"], Plan: f["plan"], BillingAnchor: billing.Anchor(f["billingAnchor"]), TimeZone: f["timeZone"]}
		if v := f["planVersion"]; v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return in, fmt.Errorf("planVersion: %q is not a plan version (1, 2, …)", v)
			}
			in.PlanVersion = n
		}
		if v := f["start"]; v != "" {
			t, err := bounds.ParseTime(v)
			if err != nil {
				return in, fmt.Errorf("start: %w", err)
			}
			in.Start = &t
		}
	} else {
		var sl subscriptionLine
		if err := strictJSON(l.text, &sl); err != nil {
			return in, err
		}
		in = sl.SubscriptionInput
	}
	var errs []error
	if in.Start == nil {
		errs = append(errs, errors.New("start: is required in an import (a subscription is found again by customer, plan and start)"))
	} else if err := bounds.CheckTime(*in.Start); err != nil {
		errs = append(errs, fmt.Errorf("start: %w", err))
	}
	if err := in.Validate(); err != nil {
		errs = append(errs, err)
	}
	return in, errors.Join(errs...)
}

// event returns the line's CloudEvent as the JSON object to send (an
// NDJSON line without its kind member, a CSV record built into one), checked
// as the server checks it. An imported event must say when it happened.
func (l importLine) event(now time.Time) ([]byte, error) {
	var raw []byte
	if l.fields != nil {
		var err error
		if raw, err = csvEvent(l.fields); err != nil {
			return nil, err
		}
	} else {
		var err error
		if raw, err = withoutMember(l.text, "kind"); err != nil {
			return nil, err
		}
	}
	evs, err := event.Decode(event.MediaTypeCloudEvent, raw, now, event.Limits{})
	if err != nil {
		var inv *event.InvalidError
		if errors.As(err, &inv) {
			var msgs []string
			for _, p := range inv.Problems {
				p.Index = -1
				msgs = append(msgs, p.String())
			}
			return nil, errors.New(strings.Join(msgs, "; "))
		}
		return nil, err
	}
	if !evs[0].TimeSet {
		return nil, errors.New(`field "time": is required in an import (when the usage happened)`)
	}
	return raw, nil
}

// csvEvent builds a CloudEvent from a CSV record: its attribute columns,
// and its data from a data column (a JSON object) and data.NAME columns,
// whose cells are JSON numbers, true, false or null when they read as one,
// else strings.
func csvEvent(f map[string]string) ([]byte, error) {
	ev := map[string]any{"specversion": "1.0"}
	for _, k := range []string{"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema"} {
		if v, ok := f[k]; ok {
			ev[k] = v
		}
	}
	data := map[string]any{}
	if v, ok := f["data"]; ok {
		if err := json.Unmarshal([]byte(v), &data); err != nil {
			return nil, fmt.Errorf("data: %q is not a JSON object", v)
		}
	}
	for k, v := range f {
		name, ok := strings.CutPrefix(k, "data.")
		if !ok {
			continue
		}
		if _, dup := data[name]; dup {
			return nil, fmt.Errorf("data.%s: also in the data column", name)
		}
		switch {
		case v == "true", v == "false", v == "null", isJSONNumber(v):
			data[name] = json.RawMessage(v)
		default:
			data[name] = v
		}
	}
	if len(data) > 0 {
		ev["data"] = data
	}
	return json.Marshal(ev)
}

func isJSONNumber(s string) bool {
	var n json.Number
	return json.Unmarshal([]byte(s), &n) == nil
}

// withoutMember returns the JSON object obj without its member name (if
// any), the other members as they were, in order.
func withoutMember(obj []byte, name string) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(obj))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	var out bytes.Buffer
	out.WriteByte('{')
	n := 0
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		k := t.(string)
		if k == name {
			continue
		}
		if n > 0 {
			out.WriteByte(',')
		}
		n++
		kb, _ := json.Marshal(k)
		out.Write(kb)
		out.WriteByte(':')
		out.Write(v)
	}
	out.WriteByte('}')
	return out.Bytes(), nil
}
