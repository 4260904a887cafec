package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// mergePatch applies patch to target as JSON Merge Patch (RFC 7386,
// section 2) does: an object patch changes target's members one by one,
// recursively, a null member removes the member, and anything else
// (an array, a string, …) replaces the target whole.
func mergePatch(target, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	t, ok := target.(map[string]any)
	if !ok {
		t = map[string]any{}
	}
	for k, v := range p {
		if v == nil {
			delete(t, k)
			continue
		}
		t[k] = mergePatch(t[k], v)
	}
	return t
}

// readMergePatch reads a PATCH request's body, a JSON Merge Patch
// (application/merge-patch+json, or application/json) of a resource whose
// input representation (the body of a PUT of it) is a T. The patch itself
// is held to a PUT body's rules, so an unknown member or a near miss
// ("Email") is refused even when its value is null.
func readMergePatch[T any](w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := readJSONBody(w, r)
	if err != nil {
		return nil, err
	}
	patch, err := decodeAny(body)
	if err != nil {
		return nil, &queryError{fmt.Errorf("body is not valid JSON: %v", err)}
	}
	if _, ok := patch.(map[string]any); !ok {
		return nil, &queryError{errors.New("body: a merge patch is a JSON object of the members to change (null removes one); send the whole resource with PUT to replace it")}
	}
	var check T
	if err := decodeJSONBody(body, &check); err != nil {
		return nil, err
	}
	return body, nil
}

// applyMergePatch applies a patch read by readMergePatch to current, the
// resource's input representation as stored, and decodes the result as a
// PUT body is decoded.
func applyMergePatch[T any](patch []byte, current T) (T, error) {
	var out T
	p, err := decodeAny(patch)
	if err != nil {
		return out, &queryError{fmt.Errorf("body is not valid JSON: %v", err)}
	}
	cur, err := json.Marshal(current)
	if err != nil {
		return out, fmt.Errorf("merge patch: %w", err)
	}
	doc, err := decodeAny(cur)
	if err != nil {
		return out, fmt.Errorf("merge patch: %w", err)
	}
	merged, err := json.Marshal(mergePatch(doc, p))
	if err != nil {
		return out, fmt.Errorf("merge patch: %w", err)
	}
	err = decodeJSONBody(merged, &out)
	return out, err
}

// decodeAny decodes JSON keeping numbers as written (json.Number), so
// that a decimal passes through a merge unchanged.
func decodeAny(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("unexpected data after the JSON value")
	}
	return v, nil
}
