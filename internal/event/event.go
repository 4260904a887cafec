// Package event holds tally's model of a usage event (a CloudEvents 1.0
// envelope) and the decoders that turn HTTP request bodies into events.
package event

import (
	"encoding/json"
	"time"
)

// Event is one usage fact as tally stores it: the CloudEvents attributes that
// tally indexes, the event's data, and the exact bytes it was received as.
type Event struct {
	// ID and Source identify the event; the pair is the deduplication key.
	ID     string
	Source string
	// Type selects the meters that count the event.
	Type string
	// Subject is the key the usage is attributed to.
	Subject string
	// Time is when the usage happened, in UTC. When the client sent no time
	// it is the receive time and TimeSet is false.
	Time    time.Time
	TimeSet bool
	// Data is the event's data member: a JSON object, or nil when absent or
	// null.
	Data json.RawMessage
	// Raw is the event exactly as received (one JSON object), the record of
	// truth kept by the store.
	Raw json.RawMessage
}

// Limits bounds what a single request may carry.
type Limits struct {
	// MaxEvents is the most events one request may hold (0: no limit).
	MaxEvents int
	// MaxEventBytes is the largest encoded size of one event (0: 1 MiB).
	MaxEventBytes int
	// MaxIDBytes is the longest event id (0: 256).
	MaxIDBytes int
	// MaxDataDepth is the deepest nesting of objects and arrays in an
	// event's data, the data object itself being level 1 (0: 32). It
	// bounds the cost of reading the data with a meter's JSONPath.
	MaxDataDepth int
	// MaxFutureSkew, when positive, rejects events whose time lies further
	// than this after the receive time.
	MaxFutureSkew time.Duration
}
