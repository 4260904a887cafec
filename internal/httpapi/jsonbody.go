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
	return nil
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
