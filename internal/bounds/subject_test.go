package bounds

import (
	"strings"
	"testing"
)

func TestCheckSubject(t *testing.T) {
	for _, tc := range []struct {
		in     string
		errHas string // empty: valid
	}{
		{in: "customer-1"},
		{in: "ünïcødé 顧客 🧑‍💻"}, // the zero-width joiner of an emoji sequence is allowed
		{in: "a b\u00a0c"},
		{in: "\ufffd"},
		{in: strings.Repeat("x", MaxSubjectBytes)},
		{in: "", errHas: "is empty"},
		{in: strings.Repeat("x", MaxSubjectBytes+1), errHas: "is 257 bytes long, at most 256 allowed"},
		{in: "\x00", errHas: `"\x00" holds the control character U+0000 at byte 0`},
		{in: "a\nb", errHas: "control character U+000A at byte 1"},
		{in: "tab\t", errHas: "U+0009"},
		{in: "del\x7f", errHas: "U+007F"},
		{in: "c1\u0085", errHas: "U+0085"},
		{in: "ab\xffcd", errHas: "is not valid UTF-8 (at byte 2)"},
		{in: "line\u2028sep", errHas: "U+2028"},
		{in: "para\u2029", errHas: "U+2029"},
		{in: "evil\u202egnp.exe", errHas: "bidirectional formatting character U+202E"},
		{in: "\u2066x", errHas: "U+2066"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			err := CheckSubject(tc.in)
			switch {
			case tc.errHas == "" && err != nil:
				t.Errorf("CheckSubject(%q) = %v, want nil", tc.in, err)
			case tc.errHas != "" && err == nil:
				t.Errorf("CheckSubject(%q) = nil, want an error containing %q", tc.in, tc.errHas)
			case tc.errHas != "" && !strings.Contains(err.Error(), tc.errHas):
				t.Errorf("CheckSubject(%q) = %q, want it to contain %q", tc.in, err, tc.errHas)
			}
		})
	}
}
