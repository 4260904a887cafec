package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/tally-metering/tally/internal/bounds"
)

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
