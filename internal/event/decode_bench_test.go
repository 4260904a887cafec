package event

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// benchBody returns n realistic events (about 220 bytes each) framed for
// the given format: "batch" (a JSON array) or "ndjson".
func benchBody(n int, framing string) []byte {
	var b bytes.Buffer
	if framing == "batch" {
		b.WriteByte('[')
	}
	for i := range n {
		if i > 0 {
			if framing == "batch" {
				b.WriteByte(',')
			} else {
				b.WriteByte('\n')
			}
		}
		fmt.Fprintf(&b, `{"specversion":"1.0","id":"r1-%09d","source":"loadgen","type":"request","subject":"subject-%d",`+
			`"time":"2026-11-22T10:00:%02d.%03dZ","datacontenttype":"application/json","data":{"value":%d.5,"route":"/api/v3/items","status":200}}`,
			i, i%1000, i%60, i%1000, i%100)
	}
	if framing == "batch" {
		b.WriteByte(']')
	}
	return b.Bytes()
}

var benchNow = time.Date(2026, 11, 22, 10, 0, 30, 0, time.UTC)

func benchDecode(b *testing.B, contentType string, body []byte, n int) {
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		evs, err := Decode(contentType, body, benchNow, Limits{MaxEvents: 10000})
		if err != nil || len(evs) != n {
			b.Fatalf("Decode: %d events, %v", len(evs), err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/event")
}

func BenchmarkDecodeBatch1000(b *testing.B) {
	body := benchBody(1000, "batch")
	b.Logf("%d bytes, %d bytes/event", len(body), len(body)/1000)
	benchDecode(b, MediaTypeCloudEventBatch, body, 1000)
}

func BenchmarkDecodeNDJSON1000(b *testing.B) {
	benchDecode(b, MediaTypeNDJSON, benchBody(1000, "ndjson"), 1000)
}

func BenchmarkDecodeSingle(b *testing.B) {
	benchDecode(b, MediaTypeCloudEvent, benchBody(1, "ndjson"), 1)
}

// BenchmarkStdlibEnvelope1000 is the baseline Decode's scanner is measured
// against: encoding/json decoding the same batch into an envelope struct
// with json.RawMessage members, without any of Decode's checks.
func BenchmarkStdlibEnvelope1000(b *testing.B) {
	body := benchBody(1000, "batch")
	type envelope struct {
		SpecVersion json.RawMessage `json:"specversion"`
		ID          json.RawMessage `json:"id"`
		Source      json.RawMessage `json:"source"`
		Type        json.RawMessage `json:"type"`
		Subject     json.RawMessage `json:"subject"`
		Time        json.RawMessage `json:"time"`
		Data        json.RawMessage `json:"data"`
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		var evs []envelope
		if err := json.Unmarshal(body, &evs); err != nil || len(evs) != 1000 {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*1000), "ns/event")
}
