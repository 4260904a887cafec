package event

import (
	"encoding/json"
	"fmt"
	"time"
)

// DataOf returns the data member of a stored raw event: the raw JSON object,
// or nil when the event has no data or null data. It reads the event with the
// same decoder as ingestion, so a replayed event sees exactly the data its
// meters saw when it arrived.
func DataOf(raw []byte) (json.RawMessage, error) {
	// Data nested deeper than Limits.MaxDataDepth was accepted before
	// that limit existed: read it as it was.
	evs, err := Decode(MediaTypeCloudEvent, raw, time.Unix(0, 0), Limits{MaxDataDepth: maxDepth})
	if err != nil {
		return nil, fmt.Errorf("read stored event: %w", err)
	}
	return evs[0].Data, nil
}
