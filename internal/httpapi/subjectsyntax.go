package httpapi

import (
	"fmt"

	"github.com/tally-metering/tally/internal/bounds"
)

// checkSubjects checks subjects named in a request (a query parameter, a
// body field) against the one subject syntax, bounds.CheckSubject. Each
// error starts with the field's name, indexed when there are several.
func checkSubjects(field string, subjects []string) []error {
	var errs []error
	for i, s := range subjects {
		if err := bounds.CheckSubject(s); err != nil {
			name := field
			if len(subjects) > 1 {
				name = fmt.Sprintf("%s[%d]", field, i)
			}
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	return errs
}
