package event

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// DataOf returns the data member of a stored raw event: the raw JSON object,
// or nil when the event has no data or null data.
func DataOf(raw []byte) (json.RawMessage, error) {
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		return nil, fmt.Errorf("read event data: %w", err)
	}
	if len(env.Data) == 0 || bytes.Equal(env.Data, []byte("null")) {
		return nil, nil
	}
	return env.Data, nil
}
