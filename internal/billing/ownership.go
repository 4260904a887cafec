package billing

import (
	"slices"
	"sort"
	"time"
)

// Ownership is one stretch of time during which a customer owned a
// subject: the subject's usage in [From, To) is the customer's.
//
// Usage is rolled up per minute, so ownership is kept in whole minutes,
// and every minute of a subject's usage is one customer's: a customer
// that gives a subject up keeps it to the end of that minute; one that
// takes it owns it from the start of that minute, or from the next one
// when that minute is still the previous owner's. A minute in which no
// customer owned the subject at all is nobody's usage.
type Ownership struct {
	Subject string `json:"subject"`
	// From is the whole minute from which the customer owns the subject;
	// nil for a subject's first owner, which owns it since the beginning
	// of time (so that usage recorded before the subject was first given
	// to a customer, or before tally kept ownership history, is still that
	// customer's).
	From *time.Time `json:"from"`
	// To is the whole minute at which the customer stopped owning the
	// subject (it removed it, or was deleted); nil while it owns it.
	To *time.Time `json:"to"`
}

// Span is a range of whole minutes [From, To).
type Span struct {
	From, To time.Time
}

// UsageSubjects says whose usage in [from, to) (both on whole minutes) is
// c's: subjects lists, sorted, every subject c owned during at least one
// of its minutes; partial holds, for the subjects among them that c owned
// during only some of those minutes, those minutes as ordered, disjoint
// spans within [from, to). A subject c owned throughout is not in partial,
// so for a customer whose subjects never moved partial is nil.
//
// A customer without SubjectHistory (one not read from a store) owns its
// Subjects for ever.
func (c Customer) UsageSubjects(from, to time.Time) (subjects []string, partial map[string][]Span) {
	if len(c.SubjectHistory) == 0 {
		return c.Subjects, nil
	}
	whole := true
	for _, o := range c.SubjectHistory {
		if o.From != nil || o.To != nil {
			whole = false
			break
		}
	}
	if whole {
		// The common case: every subject owned for ever, no spans.
		out := make([]string, 0, len(c.SubjectHistory))
		for _, o := range c.SubjectHistory {
			out = append(out, o.Subject)
		}
		sort.Strings(out)
		return slices.Compact(out), nil
	}
	spans := map[string][]Span{}
	full := map[string]bool{}
	for _, o := range c.SubjectHistory {
		f, t := from, to
		if o.From != nil {
			if m := o.From.UTC().Truncate(time.Minute); m.After(f) {
				f = m
			}
		}
		if o.To != nil {
			if m := o.To.UTC().Truncate(time.Minute); m.Before(t) {
				t = m
			}
		}
		if !f.Before(t) {
			continue
		}
		if f.Equal(from) && t.Equal(to) {
			full[o.Subject] = true
		}
		spans[o.Subject] = append(spans[o.Subject], Span{From: f, To: t})
	}
	for s, ss := range spans {
		subjects = append(subjects, s)
		if full[s] {
			continue
		}
		ss = mergeSpans(ss)
		if len(ss) == 1 && ss[0].From.Equal(from) && ss[0].To.Equal(to) {
			continue
		}
		if partial == nil {
			partial = map[string][]Span{}
		}
		partial[s] = ss
	}
	sort.Strings(subjects)
	return subjects, partial
}

// mergeSpans orders spans and joins those that touch or overlap.
func mergeSpans(ss []Span) []Span {
	slices.SortFunc(ss, func(a, b Span) int { return a.From.Compare(b.From) })
	out := ss[:1]
	for _, s := range ss[1:] {
		last := &out[len(out)-1]
		if !s.From.After(last.To) {
			if s.To.After(last.To) {
				last.To = s.To
			}
			continue
		}
		out = append(out, s)
	}
	return out
}

// EverOwned lists, sorted, every subject c has ever owned.
func (c Customer) EverOwned() []string {
	out := make([]string, 0, len(c.SubjectHistory))
	for _, o := range c.SubjectHistory {
		out = append(out, o.Subject)
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// Owned is a customer's ownership of its subjects over a range of
// minutes, read once with UsageSubjects so that the many instants one
// request names (the events of a batch) are checked against the same rule
// billing attributes usage by.
type Owned struct {
	subjects map[string]bool
	partial  map[string][]Span
	from, to time.Time
}

// OwnedBetween is c's ownership of its subjects during the minutes from
// the one containing from up to and including the one containing to.
func (c Customer) OwnedBetween(from, to time.Time) Owned {
	f := from.UTC().Truncate(time.Minute)
	t := to.UTC().Truncate(time.Minute).Add(time.Minute)
	subjects, partial := c.UsageSubjects(f, t)
	o := Owned{subjects: make(map[string]bool, len(subjects)), partial: partial, from: f, to: t}
	for _, s := range subjects {
		o.subjects[s] = true
	}
	return o
}

// Owns reports whether the customer owned subject during the minute that
// contains t. An instant outside the range Owned was read for is owned by
// no one.
func (o Owned) Owns(subject string, t time.Time) bool {
	m := t.UTC().Truncate(time.Minute)
	if m.Before(o.from) || !m.Before(o.to) || !o.subjects[subject] {
		return false
	}
	spans, ok := o.partial[subject]
	if !ok {
		return true
	}
	for _, s := range spans {
		if !m.Before(s.From) && m.Before(s.To) {
			return true
		}
	}
	return false
}

// Narrow is c as seen by a credential bound to one of its subjects: only
// that subject, owned when c owned it. Every rule that reads c's
// ownership (UsageSubjects, OwnedBetween) then reaches that subject only.
func (c Customer) Narrow(subject string) Customer {
	n := c
	n.Subjects = nil
	if slices.Contains(c.Subjects, subject) {
		n.Subjects = []string{subject}
	}
	n.SubjectHistory = []Ownership{}
	for _, o := range c.SubjectHistory {
		if o.Subject == subject {
			n.SubjectHistory = append(n.SubjectHistory, o)
		}
	}
	if len(c.SubjectHistory) == 0 && len(n.Subjects) > 0 {
		// A customer not read from a store owns its Subjects for ever.
		n.SubjectHistory = []Ownership{{Subject: subject}}
	}
	return n
}

// OwnershipOf lists the stretches of time during which c owned subject,
// in order.
func (c Customer) OwnershipOf(subject string) []Ownership {
	var out []Ownership
	for _, o := range c.SubjectHistory {
		if o.Subject == subject {
			out = append(out, o)
		}
	}
	if len(c.SubjectHistory) == 0 && slices.Contains(c.Subjects, subject) {
		out = append(out, Ownership{Subject: subject})
	}
	return out
}
