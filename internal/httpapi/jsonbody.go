package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tally-metering/tally/internal/bounds"
)

// decodeJSON reads a JSON body into v, refusing unknown fields so that a
// misspelt field is an error rather than silently ignored. A body that is
// not declared JSON is refused (415) before it is read, one over
// maxJSONBody (413) as soon as that is known, and one that is not UTF-8
// (400) before encoding/json would silently replace its bad bytes.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := readJSONBody(w, r)
	if err != nil {
		return err
	}
	return decodeJSONBody(body, v)
}

// readJSONBody reads a request's JSON body with decodeJSON's checks of
// its type, size and encoding, without decoding it.
func readJSONBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	ct := r.Header.Get("Content-Type")
	if ct != "" {
		if err := checkJSONType(ct); err != nil {
			return nil, err
		}
	}
	if r.ContentLength > maxJSONBody {
		return nil, &bodyTooLargeError{size: r.ContentLength, limit: maxJSONBody}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxJSONBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &bodyTooLargeError{size: -1, limit: maxJSONBody}
		}
		return nil, &queryError{fmt.Errorf("read body: %w", err)}
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, &queryError{errors.New("body: empty; send a JSON document")}
	}
	if ct == "" {
		return nil, &mediaTypeError{}
	}
	if err := checkUTF8(body); err != nil {
		return nil, &queryError{err}
	}
	return body, nil
}

// decodeJSONBody decodes a JSON body read by readJSONBody into v as
// decodeJSON does: unknown fields and near misses refused, times bounded.
func decodeJSONBody(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		var pe *time.ParseError
		switch {
		case errors.As(err, &pe):
			// encoding/json does not say which member held the time.
			return &queryError{fmt.Errorf("%s: %q is not an RFC 3339 time in years 0001–9999 (like 2026-06-20T10:00:00Z)", memberHolding(body, pe.Value), pe.Value)}
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
	if err := checkExactKeys(body, reflect.TypeOf(v), "body"); err != nil {
		return &queryError{err}
	}
	if err := checkTimes(reflect.ValueOf(v), ""); err != nil {
		return &queryError{err}
	}
	return nil
}

var timeType = reflect.TypeFor[time.Time]()

// checkTimes checks every time.Time in v, a decoded request body, against
// the bounds every entry point keeps (bounds.CheckTime), so that no
// request body can carry a time that breaks what is computed or shown from
// it later. Each error starts with the field's JSON path (expiresAt,
// changes[0].at, [2].from); they are joined.
func checkTimes(v reflect.Value, path string) error {
	if !mayHoldTime(v.Type()) {
		return nil
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return checkTimes(v.Elem(), path)
	case reflect.Slice, reflect.Array:
		var errs []error
		for i := 0; i < v.Len(); i++ {
			errs = append(errs, checkTimes(v.Index(i), fmt.Sprintf("%s[%d]", path, i)))
		}
		return errors.Join(errs...)
	case reflect.Map:
		var errs []error
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i]) < fmt.Sprint(keys[j]) })
		for _, k := range keys {
			errs = append(errs, checkTimes(v.MapIndex(k), joinPath(path, fmt.Sprint(k))))
		}
		return errors.Join(errs...)
	case reflect.Struct:
		if v.Type() == timeType {
			if err := bounds.CheckTime(v.Interface().(time.Time)); err != nil {
				if path == "" {
					path = "body"
				}
				return fmt.Errorf("%s: %w", path, err)
			}
			return nil
		}
		var errs []error
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			switch {
			case name == "-":
				continue
			case f.Anonymous && name == "":
				// An embedded struct's fields are the outer object's.
				errs = append(errs, checkTimes(v.Field(i), path))
				continue
			case name == "":
				name = f.Name
			}
			errs = append(errs, checkTimes(v.Field(i), joinPath(path, name)))
		}
		return errors.Join(errs...)
	}
	return nil
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// mayHoldTime reports whether a value of type t can hold a time.Time that
// encoding/json decoded, so that checkTimes skips strings, numbers and raw
// JSON without walking them.
func mayHoldTime(t reflect.Type) bool {
	return mayHoldTimeSeen(t, map[reflect.Type]bool{})
}

func mayHoldTimeSeen(t reflect.Type, seen map[reflect.Type]bool) bool {
	if t == timeType {
		return true
	}
	if seen[t] {
		return false
	}
	seen[t] = true
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return mayHoldTimeSeen(t.Elem(), seen)
	case reflect.Map:
		return mayHoldTimeSeen(t.Elem(), seen)
	case reflect.Interface:
		// encoding/json puts no time.Time in an interface.
		return false
	case reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			if f := t.Field(i); f.IsExported() && mayHoldTimeSeen(f.Type, seen) {
				return true
			}
		}
	}
	return false
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

// checkExactKeys refuses member names that match a field only when case is
// ignored (encoding/json accepts "windowsize" for "windowSize"), so that a
// misspelt field is an error, not silently applied. It checks the top-level
// object, or each object of a top-level array.
func checkExactKeys(body []byte, t reflect.Type, where string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Slice:
		var items []json.RawMessage
		if json.Unmarshal(body, &items) != nil {
			return nil
		}
		var errs []error
		for i, it := range items {
			if err := checkExactKeys(it, t.Elem(), fmt.Sprintf("[%d]", i)); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	case reflect.Struct:
	default:
		return nil
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(body, &obj) != nil {
		return nil
	}
	known := map[string]bool{}
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			known[name] = true
		}
	}
	var bad []string
	for k := range obj {
		if !known[k] {
			bad = append(bad, k)
		}
	}
	sort.Strings(bad)
	var errs []error
	for _, k := range bad {
		msg := fmt.Sprintf("%s: unknown field %q", where, k)
		for name := range known {
			if strings.EqualFold(name, k) {
				msg += fmt.Sprintf(" (did you mean %q? field names are case-sensitive)", name)
			}
		}
		errs = append(errs, errors.New(msg))
	}
	return errors.Join(errs...)
}

// jsonTypes names the media types a JSON endpoint accepts, for messages.
const jsonTypes = "application/json (or another application/*+json type), in UTF-8"

// bodyTooLargeError is a request body over limit bytes (size -1: a body
// without Content-Length found too long while reading).
type bodyTooLargeError struct{ size, limit int64 }

func (e *bodyTooLargeError) Error() string {
	if e.size < 0 {
		return fmt.Sprintf("request body is over %d bytes, the most this endpoint accepts", e.limit)
	}
	return fmt.Sprintf("request body is %d bytes, at most %d allowed", e.size, e.limit)
}

// mediaTypeError is a body sent with no Content-Type or one that is not
// JSON.
type mediaTypeError struct{ got string }

func (e *mediaTypeError) Error() string {
	if e.got == "" {
		return "the request has a body but no Content-Type; send " + jsonTypes
	}
	return fmt.Sprintf("Content-Type %s is not accepted here; send %s", strconv.Quote(truncate(e.got, 100)), jsonTypes)
}

// checkJSONType accepts application/json and application/*+json, with a
// charset parameter only if it is UTF-8 (JSON's only encoding).
func checkJSONType(ct string) error {
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return &mediaTypeError{got: ct}
	}
	if mt != "application/json" && !(strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")) {
		return &mediaTypeError{got: ct}
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "utf8") {
		return &mediaTypeError{got: ct}
	}
	return nil
}

// checkUTF8 refuses a body that is not UTF-8, or that escapes a UTF-16
// surrogate that is not part of a pair (\ud800 alone): encoding/json would
// replace either with U+FFFD and store text the client never sent.
func checkUTF8(body []byte) error {
	if !utf8.Valid(body) {
		for i := 0; i < len(body); {
			r, n := utf8.DecodeRune(body[i:])
			if r == utf8.RuneError && n <= 1 {
				return fmt.Errorf("body: not valid UTF-8 at byte %d; send JSON text in UTF-8", i)
			}
			i += n
		}
	}
	// A backslash appears in JSON only inside strings, so the escapes can
	// be found without parsing: skip each escape whole, check each \u.
	for i := bytes.IndexByte(body, '\\'); i >= 0 && i+1 < len(body); {
		if body[i+1] == 'u' {
			hi, ok := hex4(body, i+2)
			switch {
			case ok && hi >= 0xD800 && hi < 0xDC00:
				lo, ok := -1, false
				if i+7 < len(body) && body[i+6] == '\\' && body[i+7] == 'u' {
					lo, ok = hex4(body, i+8)
				}
				if !ok || lo < 0xDC00 || lo >= 0xE000 {
					return fmt.Errorf("body: \\u%04x at byte %d is half of a UTF-16 surrogate pair; send the whole character", hi, i)
				}
				i += 6
			case ok && hi >= 0xDC00 && hi < 0xE000:
				return fmt.Errorf("body: \\u%04x at byte %d is half of a UTF-16 surrogate pair; send the whole character", hi, i)
			}
		}
		j := bytes.IndexByte(body[i+2:], '\\')
		if j < 0 {
			break
		}
		i += 2 + j
	}
	return nil
}

// hex4 reads the four hex digits at b[i:].
func hex4(b []byte, i int) (int, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	n, err := strconv.ParseUint(string(b[i:i+4]), 16, 16)
	return int(n), err == nil
}

// truncate shortens s to at most n bytes for a message, on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// memberHolding names the member of body whose value is the string val,
// for errors that encoding/json reports without the field; "body" when
// none is found.
func memberHolding(body []byte, val string) string {
	re, err := regexp.Compile(`"((?:[^"\\]|\\.)*)"\s*:\s*"` + regexp.QuoteMeta(val) + `"`)
	if err != nil {
		return "body"
	}
	if m := re.FindSubmatch(body); m != nil {
		return string(m[1])
	}
	return "body"
}
