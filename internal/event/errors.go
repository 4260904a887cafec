package event

import (
	"errors"
	"fmt"
	"strings"
)

// ErrUnsupportedMediaType is returned (wrapped) by Decode for a Content-Type
// tally does not decode.
var ErrUnsupportedMediaType = errors.New("unsupported media type")

// Problem is one thing wrong with a request: which event (by its 0-based
// position in the request, -1 for the request as a whole), which field, and
// what is wrong with it.
type Problem struct {
	Index   int    `json:"index"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

func (p Problem) String() string {
	var b strings.Builder
	if p.Index >= 0 {
		fmt.Fprintf(&b, "event %d", p.Index)
		if p.Field != "" {
			fmt.Fprintf(&b, " field %q", p.Field)
		}
		b.WriteString(": ")
	} else if p.Field != "" {
		fmt.Fprintf(&b, "field %q: ", p.Field)
	}
	b.WriteString(p.Message)
	return b.String()
}

// InvalidError is returned by Decode when a request is rejected whole. It
// lists every problem found.
type InvalidError struct {
	// TooLarge is set when the request holds more events than allowed, so
	// that the caller answers 413 rather than 400.
	TooLarge bool
	Problems []Problem
}

func (e *InvalidError) Error() string {
	parts := make([]string, 0, len(e.Problems))
	for _, p := range e.Problems {
		parts = append(parts, p.String())
	}
	return "invalid events: " + strings.Join(parts, "; ")
}
