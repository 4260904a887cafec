package meter

import (
	"strings"
	"testing"
)

// worstData returns an event data object of about size bytes, nested
// depth levels deep (the ingest limit is 32), whose innermost array holds
// as many empty objects as fit: the most nodes per byte, each one a place
// a recursive descent must look.
func worstData(size, depth int) []byte {
	var b strings.Builder
	for range depth - 2 {
		b.WriteString(`{"x":`)
	}
	b.WriteString(`[`)
	for i := 0; b.Len() < size-depth-2; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{}`)
	}
	b.WriteString(`]`)
	for range depth - 2 {
		b.WriteString(`}`)
	}
	return []byte(`{"a":` + b.String() + `}`)
}

// BenchmarkWorstPath measures, per 1 MiB event, a meter whose value path
// has the one recursive descent allowed, on the costliest data within the
// ingest limits (docs/api.md quotes it). The data is parsed anew each time,
// as it is for each event. For comparison, $.a.x.x.x is a plain member
// chain (read from the bytes) and $.a[0] costs the parse alone.
func BenchmarkWorstPath(b *testing.B) {
	data := worstData(1<<20, 32)
	for _, p := range []string{"$..tokens", "$..x.a[*].tokens", "$.a.x.x.x", "$.a[0]"} {
		b.Run(p, func(b *testing.B) {
			c, err := Compile(Meter{Slug: "m", EventType: "e", Aggregation: Sum, ValueProperty: p})
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := c.Extract(NewData(data)); err == nil {
					b.Fatal("no error for a missing value")
				}
			}
		})
	}
}
