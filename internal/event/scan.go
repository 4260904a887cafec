package event

import (
	"encoding/binary"
	"fmt"
	"unicode/utf8"
)

// This file holds a small, allocation-free JSON scanner used by Decode. It
// validates JSON text as RFC 8259 defines it (plus: strings must be valid
// UTF-8) and reports where values start and end, without building any
// values. Decode uses it instead of encoding/json's reflection-based
// Unmarshal because it is several times faster on the event envelopes tally
// ingests (see BenchmarkDecodeBatch1000 and BenchmarkStdlibEnvelope).

// maxDepth is the deepest nesting of arrays and objects accepted; it matches
// encoding/json's limit.
const maxDepth = 10000

// JSON value kinds as reported by the scanner. kindAbsent is the zero value:
// an attribute that did not occur in the event object.
const (
	kindAbsent byte = iota
	kindNull
	kindBool
	kindNumber
	kindString
	kindArray
	kindObject
)

func kindName(k byte) string {
	switch k {
	case kindNull:
		return "null"
	case kindBool:
		return "boolean"
	case kindNumber:
		return "number"
	case kindString:
		return "string"
	case kindArray:
		return "array"
	case kindObject:
		return "object"
	}
	return "nothing"
}

// strPlain marks the bytes that may appear in a JSON string without further
// checks: everything but control characters, '"', '\\' and non-ASCII bytes
// (which must be checked to be valid UTF-8).
var strPlain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// isSpace reports whether c is JSON insignificant whitespace.
func isSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\r' || c == '\t' }

// scanError is a JSON syntax error at byte offset off of the scanned buffer.
// The message is built only when the error is reported.
type scanError struct {
	off    int
	what   string // what was expected at off
	detail string // set instead of "invalid character" text when not empty
}

// scanner walks JSON text in buf. The zero pos is the start of buf. After a
// failure err is set and the scanner must not be used further.
type scanner struct {
	buf   []byte
	pos   int
	depth int
	peak  int // the greatest depth reached (reset by the caller)
	err   scanError
}

// fail records a syntax error at off and returns false.
func (s *scanner) fail(off int, what string) bool {
	s.err = scanError{off: off, what: what}
	return false
}

// failDetail records a syntax error with a specific description.
func (s *scanner) failDetail(off int, detail string) bool {
	s.err = scanError{off: off, detail: detail}
	return false
}

// message describes the recorded error without its position.
func (s *scanner) message() string {
	e := s.err
	if e.detail != "" {
		return e.detail
	}
	if e.off >= len(s.buf) {
		return "unexpected end of input, expected " + e.what
	}
	return fmt.Sprintf("invalid character %s, expected %s", quoteChar(s.buf[e.off:]), e.what)
}

// quoteChar quotes the character that starts b for an error message.
func quoteChar(b []byte) string {
	r, size := utf8.DecodeRune(b)
	if r == utf8.RuneError && size <= 1 {
		return fmt.Sprintf("byte 0x%02x", b[0])
	}
	return fmt.Sprintf("%q", r)
}

func (s *scanner) skipSpace() {
	// Compact JSON has no whitespace: make that case cheap.
	if s.pos < len(s.buf) && s.buf[s.pos] > ' ' {
		return
	}
	for s.pos < len(s.buf) && isSpace(s.buf[s.pos]) {
		s.pos++
	}
}

// str scans the string that starts at s.pos (which must hold '"'). It
// returns the span of its contents between the quotes and whether it holds
// escape sequences.
func (s *scanner) str() (start, end int, esc, ok bool) {
	buf := s.buf
	i := s.pos + 1
	start = i
	for {
		// Skip eight plain bytes at a time, then one at a time.
		for i+8 <= len(buf) && plain8(binary.LittleEndian.Uint64(buf[i:])) {
			i += 8
		}
		for i < len(buf) && strPlain[buf[i]] {
			i++
		}
		if i >= len(buf) {
			return 0, 0, false, s.fail(i, `'"' to end the string`)
		}
		switch c := buf[i]; {
		case c == '"':
			s.pos = i + 1
			return start, i, esc, true
		case c == '\\':
			esc = true
			if i+1 >= len(buf) {
				return 0, 0, false, s.fail(i+1, "an escape sequence")
			}
			switch buf[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				for j := i + 2; j < i+6; j++ {
					if j >= len(buf) || !isHex(buf[j]) {
						return 0, 0, false, s.fail(j, `a hexadecimal digit in a \u escape`)
					}
				}
				i += 6
			default:
				return 0, 0, false, s.fail(i+1, `an escape sequence (one of "\/bfnrtu)`)
			}
		case c < 0x20:
			return 0, 0, false, s.fail(i, "a string character (control characters must be escaped)")
		default:
			r, size := utf8.DecodeRune(buf[i:])
			if r == utf8.RuneError && size == 1 {
				return 0, 0, false, s.failDetail(i, fmt.Sprintf("invalid UTF-8 byte 0x%02x in string", c))
			}
			i += size
		}
	}
}

// plain8 reports whether the eight bytes packed in x are all plain string
// bytes (see strPlain), using the bit tricks of "Bit Twiddling Hacks":
// (y - n*ones) &^ y & high is non-zero exactly when some byte of y is less
// than n (for n <= 128).
func plain8(x uint64) bool {
	const (
		ones   = 0x0101010101010101
		high   = 0x8080808080808080
		quote  = '"' * ones
		bslash = '\\' * ones
	)
	q, b := x^quote, x^bslash // a zero byte marks '"' or '\\'
	special := x |            // non-ASCII (high bit)
		(x-0x20*ones)&^x | // control characters (< 0x20)
		(q-ones)&^q |
		(b-ones)&^b
	return special&high == 0
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// number scans the number that starts at s.pos.
func (s *scanner) number() bool {
	buf := s.buf
	i := s.pos
	if buf[i] == '-' {
		i++
	}
	switch {
	case i < len(buf) && buf[i] == '0':
		i++
	case i < len(buf) && isDigit(buf[i]):
		for i < len(buf) && isDigit(buf[i]) {
			i++
		}
	default:
		return s.fail(i, "a digit")
	}
	if i < len(buf) && buf[i] == '.' {
		i++
		if i >= len(buf) || !isDigit(buf[i]) {
			return s.fail(i, "a digit after the decimal point")
		}
		for i < len(buf) && isDigit(buf[i]) {
			i++
		}
	}
	if i < len(buf) && (buf[i] == 'e' || buf[i] == 'E') {
		i++
		if i < len(buf) && (buf[i] == '+' || buf[i] == '-') {
			i++
		}
		if i >= len(buf) || !isDigit(buf[i]) {
			return s.fail(i, "a digit in the exponent")
		}
		for i < len(buf) && isDigit(buf[i]) {
			i++
		}
	}
	s.pos = i
	return true
}

// literal scans the literal lit (true, false or null) at s.pos.
func (s *scanner) literal(lit string) bool {
	for j := 0; j < len(lit); j++ {
		if s.pos+j >= len(s.buf) || s.buf[s.pos+j] != lit[j] {
			return s.fail(s.pos+j, fmt.Sprintf("%q (in literal %s)", lit[j], lit))
		}
	}
	s.pos += len(lit)
	return true
}

// value scans one JSON value, skipping leading whitespace, and returns its
// kind. On return s.pos is just past the value.
func (s *scanner) value() (byte, bool) {
	s.skipSpace()
	if s.pos >= len(s.buf) {
		return 0, s.fail(s.pos, "a JSON value")
	}
	switch c := s.buf[s.pos]; c {
	case '"':
		_, _, _, ok := s.str()
		return kindString, ok
	case '{':
		return kindObject, s.object()
	case '[':
		return kindArray, s.array()
	case 't':
		return kindBool, s.literal("true")
	case 'f':
		return kindBool, s.literal("false")
	case 'n':
		return kindNull, s.literal("null")
	default:
		if c == '-' || isDigit(c) {
			return kindNumber, s.number()
		}
		return 0, s.fail(s.pos, "a JSON value")
	}
}

// enter and leave track nesting depth.
func (s *scanner) enter() bool {
	s.depth++
	if s.depth > s.peak {
		s.peak = s.depth
	}
	if s.depth > maxDepth {
		return s.failDetail(s.pos, fmt.Sprintf("exceeded the maximum nesting depth of %d", maxDepth))
	}
	return true
}

// object scans the object that starts at s.pos (which must hold '{').
func (s *scanner) object() bool {
	if !s.enter() {
		return false
	}
	s.pos++
	s.skipSpace()
	if s.pos < len(s.buf) && s.buf[s.pos] == '}' {
		s.pos++
		s.depth--
		return true
	}
	for {
		s.skipSpace()
		if s.pos >= len(s.buf) || s.buf[s.pos] != '"' {
			return s.fail(s.pos, "a string for an object key")
		}
		if _, _, _, ok := s.str(); !ok {
			return false
		}
		s.skipSpace()
		if s.pos >= len(s.buf) || s.buf[s.pos] != ':' {
			return s.fail(s.pos, "':' after an object key")
		}
		s.pos++
		if _, ok := s.value(); !ok {
			return false
		}
		s.skipSpace()
		if s.pos >= len(s.buf) {
			return s.fail(s.pos, "',' or '}' after an object value")
		}
		switch s.buf[s.pos] {
		case ',':
			s.pos++
		case '}':
			s.pos++
			s.depth--
			return true
		default:
			return s.fail(s.pos, "',' or '}' after an object value")
		}
	}
}

// array scans the array that starts at s.pos (which must hold '[').
func (s *scanner) array() bool {
	if !s.enter() {
		return false
	}
	s.pos++
	s.skipSpace()
	if s.pos < len(s.buf) && s.buf[s.pos] == ']' {
		s.pos++
		s.depth--
		return true
	}
	for {
		if _, ok := s.value(); !ok {
			return false
		}
		s.skipSpace()
		if s.pos >= len(s.buf) {
			return s.fail(s.pos, "',' or ']' after an array element")
		}
		switch s.buf[s.pos] {
		case ',':
			s.pos++
		case ']':
			s.pos++
			s.depth--
			return true
		default:
			return s.fail(s.pos, "',' or ']' after an array element")
		}
	}
}
