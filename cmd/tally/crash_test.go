package main

// The crash test: kill -9 the server while it takes in load, restart it on
// the same data directory, and check that every acknowledged event
// survived, that a client resending everything ends with every event
// counted exactly once, and that `tally verify` agrees.

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// crashLoad is the state of one load run against a server.
type crashLoad struct {
	mu       sync.Mutex
	attempts []*crashAttempt // every batch a worker started to send
	inflight atomic.Int32    // requests sent and not yet answered
}

type crashAttempt struct {
	batch  *chargeBatch
	sentAt time.Time
	acked  bool // the server answered 204
	status int  // the HTTP status, 0 for a transport error
	err    error
}

// load runs workers that each send batches of batchSize events until ctx
// is done or a request fails. It returns when every worker has stopped.
func (l *crashLoad) run(ctx context.Context, url string, workers, batchSize int, pace time.Duration, base time.Time) {
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{}}
			defer client.CloseIdleConnections()
			for b := 0; ctx.Err() == nil; b++ {
				start := time.Now()
				batch := makeChargeBatch(fmt.Sprintf("w%d-b%d", w, b), batchSize, int64(w*10_000+b), base)
				a := &crashAttempt{batch: batch, sentAt: time.Now()}
				l.mu.Lock()
				l.attempts = append(l.attempts, a)
				l.mu.Unlock()
				l.inflight.Add(1)
				status, err := postBatch(client, url, batch)
				l.inflight.Add(-1)
				l.mu.Lock()
				a.status, a.err, a.acked = status, err, err == nil && status == http.StatusNoContent
				ok := a.acked
				l.mu.Unlock()
				if !ok {
					return
				}
				if d := pace - time.Since(start); d > 0 {
					select {
					case <-ctx.Done():
					case <-time.After(d):
					}
				}
			}
		}()
	}
	wg.Wait()
}

func postBatch(client *http.Client, url string, b *chargeBatch) (int, error) {
	req, err := http.NewRequest("POST", url+"/api/v1/events", bytes.NewReader(b.body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/cloudevents-batch+json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var buf [512]byte
	for {
		if _, err := resp.Body.Read(buf[:]); err != nil {
			break
		}
	}
	return resp.StatusCode, nil
}

// ackedCount is how many batches have been acknowledged so far.
func (l *crashLoad) ackedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, a := range l.attempts {
		if a.acked {
			n++
		}
	}
	return n
}

// crashScenario says when to kill the server.
type crashScenario struct {
	// killAfter is how long after the meters were created the server is
	// killed (once at least minAcked batches were acknowledged).
	killAfter time.Duration
	minAcked  int
	// verifyFirst runs `tally verify` on the crashed data directory before
	// the server restarts (verify replays the unflushed events itself).
	verifyFirst bool
}

// flushInterval is the store's default rollup flush interval.
const flushInterval = 2 * time.Second

func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts servers for about 15 s; the README's test command (no -short) runs it")
	}
	// Each scenario runs its own server on its own data directory, and
	// mostly waits: together they take as long as the longer one.
	t.Run("kill before the first rollup flush", func(t *testing.T) {
		t.Parallel()
		runCrash(t, crashScenario{killAfter: 1200 * time.Millisecond, minAcked: 4})
	})
	t.Run("kill after rollup flushes, verify before restart", func(t *testing.T) {
		t.Parallel()
		runCrash(t, crashScenario{killAfter: 2800 * time.Millisecond, minAcked: 8, verifyFirst: true})
	})
}

func runCrash(t *testing.T, sc crashScenario) {
	data := t.TempDir()
	srv := startTally(t, data, serveOpts{})
	base := time.Now().UTC().Truncate(time.Minute).Add(-30 * time.Minute)

	// The store flushes its rollup overlay (and resets the flush clock) on
	// every meter change: t0 is before the last one, t1 after it.
	metersList := []string{
		`{"slug":"charges","eventType":"charge","aggregation":"COUNT"}`,
		`{"slug":"cents","eventType":"charge","aggregation":"SUM","valueProperty":"$.value"}`,
		`{"slug":"cents_by_plan","eventType":"charge","aggregation":"SUM","valueProperty":"$.value","groupBy":{"plan":"$.plan"}}`,
	}
	var t0 time.Time
	for _, m := range metersList {
		t0 = time.Now()
		srv.do(http.StatusCreated, "POST", "/api/v1/meters", "application/json", m)
	}
	t1 := time.Now()

	load := &crashLoad{}
	ctx, cancel := context.WithCancel(context.Background())
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		load.run(ctx, srv.URL, 4, 500, 40*time.Millisecond, base)
	}()
	deadline := t1.Add(sc.killAfter + 30*time.Second)
	// Kill while requests are in flight.
	for time.Since(t1) < sc.killAfter || load.ackedCount() < sc.minAcked || load.inflight.Load() < 2 {
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	killedAt := time.Now()
	srv.kill()
	cancel()
	<-loadDone

	var acked, unacked []*chargeBatch
	ackedEvents, lastAckedSend := 0, time.Time{}
	for _, a := range load.attempts {
		if a.acked {
			acked = append(acked, a.batch)
			ackedEvents += a.batch.count
			if a.sentAt.After(lastAckedSend) {
				lastAckedSend = a.sentAt
			}
			continue
		}
		if a.err == nil {
			t.Errorf("batch %s: status %d, want 204 or a transport error from the kill", a.batch.name, a.status)
		}
		unacked = append(unacked, a.batch)
	}
	t.Logf("killed %v after the meters were created: %d batches acknowledged (%d events), %d in flight or failed",
		killedAt.Sub(t1).Round(time.Millisecond), len(acked), ackedEvents, len(unacked))
	if len(acked) == 0 {
		t.Fatalf("no batch was acknowledged before the kill")
	}
	if len(unacked) == 0 {
		t.Errorf("no batch was in flight at the kill: the kill did not happen mid-run")
	}

	if sc.verifyFirst {
		out := verifyData(t, data)
		t.Logf("verify after the crash: %s", out)
	}

	// Restart on the same data directory.
	srv = startTally(t, data, serveOpts{})
	n := replayed(t, srv.Log())

	// Every acknowledged event is there: check a sample by id.
	step := max(1, len(acked)/8)
	for i := 0; i < len(acked); i += step {
		b := acked[i]
		for _, id := range []string{b.ids[0], b.ids[len(b.ids)/2], b.ids[len(b.ids)-1]} {
			if c := srv.eventCount(id); c != 1 {
				t.Errorf("acknowledged event %s: %d stored, want 1", id, c)
			}
		}
	}
	// A batch is stored whole or not at all; find which unacknowledged
	// ones made it.
	stored := append([]*chargeBatch(nil), acked...)
	for _, b := range unacked {
		first, last := srv.eventCount(b.ids[0]), srv.eventCount(b.ids[len(b.ids)-1])
		if first != last {
			t.Errorf("batch %s was stored in part: first event %d, last event %d", b.name, first, last)
		}
		if first == 1 {
			stored = append(stored, b)
		}
	}
	storedEvents := 0
	for _, b := range stored {
		storedEvents += b.count
	}
	t.Logf("after restart: %d events stored (%d acknowledged), %d replayed into the rollups", storedEvents, ackedEvents, n)
	// The totals are exactly those of the stored batches: at least every
	// acknowledged event, at most every sent one.
	checkChargeTotals(t, srv, stored)

	switch {
	case sc.verifyFirst:
		// verify already replayed and flushed: nothing is left to replay.
		if n != 0 {
			t.Errorf("restart after verify replayed %d events, want 0", n)
		}
	case killedAt.Before(t0.Add(flushInterval - 200*time.Millisecond)):
		// No rollup flush could have happened since the last meter change:
		// every stored event had to be replayed from the raw events.
		if n != storedEvents {
			t.Errorf("restart replayed %d events into the rollups, want all %d stored events", n, storedEvents)
		}
	default:
		t.Logf("the kill came %v after the last meter change; not checking the replay count", killedAt.Sub(t0))
	}
	if sc.verifyFirst && lastAckedSend.After(t1.Add(flushInterval)) {
		// A batch sent after the flush interval was committed, so a flush
		// happened before the kill: some events were in the rollups table
		// and some only replayed, and the totals above add both.
		t.Logf("a rollup flush happened before the kill (a batch sent %v after the last meter change was acknowledged)",
			lastAckedSend.Sub(t1).Round(time.Millisecond))
	}

	// The client retries every batch, acknowledged or not: each event still
	// counts once.
	all := append(append([]*chargeBatch(nil), acked...), unacked...)
	var wg sync.WaitGroup
	work := make(chan *chargeBatch)
	var mu sync.Mutex
	var failures []string
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{}}
			defer client.CloseIdleConnections()
			for b := range work {
				status, err := postBatch(client, srv.URL, b)
				if err != nil || status != http.StatusNoContent {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("%s: status %d err %v", b.name, status, err))
					mu.Unlock()
				}
			}
		}()
	}
	for _, b := range all {
		work <- b
	}
	close(work)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d resent batches failed, first: %s", len(failures), failures[0])
	}
	checkChargeTotals(t, srv, all)

	srv.stop()
	out := verifyData(t, data)
	if want := "ok: 3 meters"; len(out) < len(want) || out[:len(want)] != want {
		t.Errorf("verify: %q, want %q…", out, want)
	}
}
