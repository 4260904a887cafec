package bounds

import (
	"fmt"
	"unicode"
	"unicode/utf8"
)

// MaxSubjectBytes is the longest subject, in bytes of UTF-8: the bound
// customers' subjects and /api/v1/subjects keys have always had.
const MaxSubjectBytes = 256

// CheckSubject checks the syntax of a subject, the key usage is attributed
// to, wherever one enters: event subjects, customers' subjects, subject
// keys, the subject an API key or portal token is bound to, an OIDC subject
// claim and the subject query parameters. A subject is a non-empty string
// of at most MaxSubjectBytes bytes of valid UTF-8 holding no control
// character (Unicode category Cc: U+0000–U+001F, U+007F–U+009F), no line
// or paragraph separator (U+2028, U+2029) and no bidirectional formatting
// character (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069).
//
// Control characters and separators break lines in logs and CSV exports,
// and U+0000 has served as an internal marker; bidirectional formatting
// makes one subject display as another. Other format characters (the
// zero-width joiner of emoji sequences) and every other printable character
// are allowed, so the syntax stays a superset of what clients send today.
//
// The error says what is wrong (and where, as a byte offset) and quotes the
// subject; callers prefix the field name.
func CheckSubject(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("is empty; a subject is a non-empty string")
	case len(s) > MaxSubjectBytes:
		return fmt.Errorf("%s is %d bytes long, at most %d allowed", QuoteText(s), len(s), MaxSubjectBytes)
	}
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			// ASCII, nearly every subject: only C0 and DEL are refused.
			if c < 0x20 || c == 0x7f {
				return controlError(s, rune(c), i)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			return fmt.Errorf("%s is not valid UTF-8 (at byte %d)", QuoteText(s), i)
		case unicode.IsControl(r):
			return controlError(s, r, i)
		case r == '\u2028' || r == '\u2029':
			return fmt.Errorf("%s holds the line or paragraph separator %U at byte %d; subjects can't contain line breaks", QuoteText(s), r, i)
		case unicode.Is(unicode.Bidi_Control, r):
			return fmt.Errorf("%s holds the bidirectional formatting character %U at byte %d; subjects can't contain them", QuoteText(s), r, i)
		}
		i += n
	}
	return nil
}

func controlError(s string, r rune, i int) error {
	return fmt.Errorf("%s holds the control character %U at byte %d; subjects can't contain control characters", QuoteText(s), r, i)
}
