package httpapi

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestMergePatchRFC7386 runs the examples of RFC 7386, appendix A.
func TestMergePatchRFC7386(t *testing.T) {
	for _, tc := range []struct{ target, patch, want string }{
		{`{"a":"b"}`, `{"a":"c"}`, `{"a":"c"}`},
		{`{"a":"b"}`, `{"b":"c"}`, `{"a":"b","b":"c"}`},
		{`{"a":"b"}`, `{"a":null}`, `{}`},
		{`{"a":"b","b":"c"}`, `{"a":null}`, `{"b":"c"}`},
		{`{"a":["b"]}`, `{"a":"c"}`, `{"a":"c"}`},
		{`{"a":"c"}`, `{"a":["b"]}`, `{"a":["b"]}`},
		{`{"a":{"b":"c"}}`, `{"a":{"b":"d","c":null}}`, `{"a":{"b":"d"}}`},
		{`{"a":[{"b":"c"}]}`, `{"a":[1]}`, `{"a":[1]}`},
		{`["a","b"]`, `["c","d"]`, `["c","d"]`},
		{`{"a":"b"}`, `["c"]`, `["c"]`},
		{`{"a":"foo"}`, `null`, `null`},
		{`{"a":"foo"}`, `"bar"`, `"bar"`},
		{`{"e":null}`, `{"a":1}`, `{"e":null,"a":1}`},
		{`[1,2]`, `{"a":"b","c":null}`, `{"a":"b"}`},
		{`{}`, `{"a":{"bb":{"ccc":null}}}`, `{"a":{"bb":{}}}`},
	} {
		target, err := decodeAny([]byte(tc.target))
		if err != nil {
			t.Fatal(err)
		}
		patch, err := decodeAny([]byte(tc.patch))
		if err != nil {
			t.Fatal(err)
		}
		want, _ := decodeAny([]byte(tc.want))
		if got := mergePatch(target, patch); !reflect.DeepEqual(got, want) {
			b, _ := json.Marshal(got)
			t.Errorf("merge %s into %s = %s, want %s", tc.patch, tc.target, b, tc.want)
		}
	}
}

// FuzzMergePatch: applying a patch twice gives what applying it once
// does (a merge patch is idempotent), and nothing panics.
func FuzzMergePatch(f *testing.F) {
	f.Add(`{"a":{"b":"c"},"d":[1]}`, `{"a":{"b":null,"e":1},"d":null}`)
	f.Add(`{"email":"x"}`, `{"email":null}`)
	f.Fuzz(func(t *testing.T, target, patch string) {
		tv, err := decodeAny([]byte(target))
		if err != nil {
			return
		}
		pv, err := decodeAny([]byte(patch))
		if err != nil {
			return
		}
		once, _ := json.Marshal(mergePatch(tv, pv))
		o, _ := decodeAny(once)
		pv2, _ := decodeAny([]byte(patch))
		twice, _ := json.Marshal(mergePatch(o, pv2))
		if string(once) != string(twice) {
			t.Errorf("patch %s on %s: once %s, twice %s", patch, target, once, twice)
		}
	})
}

// FuzzCursor: a cursor decodes to the key it was made of, and any text
// given as one is either a cursor of the list or an error naming after.
func FuzzCursor(f *testing.F) {
	f.Add("customers", "contoso", "id-1", "")
	f.Add("plans", "", "", "WyJwbGFucyIsIngiXQ")
	f.Fuzz(func(t *testing.T, list, a, b, raw string) {
		if !utf8.ValidString(list) || !utf8.ValidString(a) || !utf8.ValidString(b) {
			return // sort keys are stored text, UTF-8 by the input checks
		}
		c := encodeCursor(list, []string{a, b})
		got, err := decodeCursor(c, list, 2)
		if err != nil || len(got) != 2 || got[0] != a || got[1] != b {
			t.Errorf("cursor of %q %q in %q: %v, %v", a, b, list, got, err)
		}
		if _, err := decodeCursor(raw, list, 2); err != nil && !strings.HasPrefix(err.Error(), "after:") {
			t.Errorf("error %q does not name after", err)
		}
	})
}

func TestPaginateInMemory(t *testing.T) {
	key := func(s string) []string { return []string{s} }
	items := []string{"d", "a", "c", "b", "e"}
	p := paginate("x", items, key, pageRequest{Limit: 2})
	if !reflect.DeepEqual(p.Items, []string{"a", "b"}) || p.NextAfter == "" {
		t.Fatalf("first page %+v", p)
	}
	after, _ := decodeCursor(p.NextAfter, "x", 1)
	// An item inserted before the cursor is not seen, one after is.
	items = append(items, "a0", "b1")
	p = paginate("x", items, key, pageRequest{Limit: 2, After: after})
	if !reflect.DeepEqual(p.Items, []string{"b1", "c"}) {
		t.Fatalf("second page %+v", p)
	}
	after, _ = decodeCursor(p.NextAfter, "x", 1)
	p = paginate("x", items, key, pageRequest{Limit: 2, After: after})
	if !reflect.DeepEqual(p.Items, []string{"d", "e"}) || p.NextAfter != "" {
		t.Fatalf("last page %+v", p)
	}
}
