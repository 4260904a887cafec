package meter

import (
	"fmt"
	"strings"
	"testing"
)

// TestValidateDefinitionBounds: a definition past a bound is refused when
// made, yet a meter stored before the bounds still compiles.
func TestValidateDefinitionBounds(t *testing.T) {
	wide := Meter{Slug: "wide", EventType: "e", Aggregation: Count, GroupBy: map[string]string{}}
	for i := 0; i <= MaxGroupBy; i++ {
		wide.GroupBy[fmt.Sprintf("k%d", i)] = fmt.Sprintf("$.k%d", i)
	}
	for _, tc := range []struct {
		name string
		m    Meter
		want string
	}{
		{"groupBy", wide, "groupBy: 21 keys, at most 20 allowed"},
		{"eventType", Meter{Slug: "m", EventType: strings.Repeat("e", MaxEventTypeLen+1), Aggregation: Count}, "eventType: 257 bytes"},
		{"name", Meter{Slug: "m", Name: strings.Repeat("ñ", MaxNameLen+1), EventType: "e", Aggregation: Count}, "name: 257 characters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.m.ValidateDefinition()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ValidateDefinition() = %v, want %q", err, tc.want)
			}
			if _, err := Compile(tc.m); err != nil {
				t.Errorf("Compile() = %v; a stored meter past a bound must still load", err)
			}
		})
	}
	ok := Meter{Slug: "m", Name: strings.Repeat("ñ", MaxNameLen), EventType: "e", Aggregation: Count}
	if err := ok.ValidateDefinition(); err != nil {
		t.Errorf("at the bounds: %v", err)
	}
}
