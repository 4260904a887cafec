// Package ingest is tally's write path: the group-commit pipeline that
// appends raw events and applies them to meter rollups in one durable
// transaction, and the meter registry whose changes it serialises.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tally-metering/tally/internal/event"
	"github.com/tally-metering/tally/internal/store"
)

// ErrClosed is returned by Submit after Close.
var ErrClosed = errors.New("ingest pipeline is shut down")

// Store is what the pipeline needs from storage.
type Store interface {
	store.Events
	store.Corrections
	store.Meters
	store.Rollups
}

// Config tunes the pipeline.
type Config struct {
	// MaxBatchEvents caps the events in one commit (default 20,000).
	MaxBatchEvents int
	// QueueRequests is how many requests may wait for the writer (default 256).
	QueueRequests int
	// Writers is how many goroutines commit batches (default 2). The store
	// serialises the writes themselves; with two, one batch's rollup deltas
	// are merged while the next batch is written.
	Writers int
}

// Pipeline batches concurrent Submit calls into shared transactions (group
// commit): while one transaction commits, new requests queue, and the next
// transaction takes all of them.
type Pipeline struct {
	store   Store
	now     func() time.Time
	log     *slog.Logger
	metrics *Metrics
	cfg     Config

	meters     atomic.Pointer[MeterSet]
	meterMu    sync.Mutex // serialises meter changes
	reqs       chan *request
	exclMu     sync.RWMutex // writers hold it for reading while they commit
	quit       chan struct{}
	done       chan struct{}
	closeOnce  sync.Once
	closed     atomic.Bool
	pending    atomic.Int64 // Submit calls not yet returned
	setVersion atomic.Int64
}

type request struct {
	events []store.NewEvent
	raw    []event.Event
	set    *MeterSet
	done   chan error
}

// New starts a pipeline over st. Call LoadMeters before serving and Close
// when done.
func New(st Store, now func() time.Time, log *slog.Logger, metrics *Metrics, cfg Config) *Pipeline {
	if cfg.MaxBatchEvents <= 0 {
		cfg.MaxBatchEvents = 20000
	}
	if cfg.QueueRequests <= 0 {
		cfg.QueueRequests = 256
	}
	if cfg.Writers <= 0 {
		cfg.Writers = 2
	}
	p := &Pipeline{
		store:   st,
		now:     now,
		log:     log.With("component", "ingest"),
		metrics: metrics,
		cfg:     cfg,
		reqs:    make(chan *request, cfg.QueueRequests),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	empty, _ := NewMeterSet(0, nil)
	p.meters.Store(empty)
	var wg sync.WaitGroup
	for range cfg.Writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.run()
		}()
	}
	go func() {
		wg.Wait()
		close(p.done)
	}()
	return p
}

// Submit stores events durably and applies them to the meters. It returns
// nil only after the transaction holding every one of them has committed.
// Events already stored (same source and id) are skipped, so retries are
// safe.
func (p *Pipeline) Submit(ctx context.Context, events []event.Event) error {
	p.pending.Add(1)
	defer p.pending.Add(-1)
	if p.closed.Load() {
		return ErrClosed
	}
	set := p.meters.Load()
	r := &request{raw: events, set: set, done: make(chan error, 1)}
	r.events = buildNewEvents(set, events)
	select {
	case p.reqs <- r:
	case <-ctx.Done():
		return fmt.Errorf("submit events: %w", ctx.Err())
	case <-p.quit:
		return ErrClosed
	}
	// Once queued, the request is committed or failed by the writer; wait
	// for the outcome even if the client went away, so that the answer
	// never runs ahead of the commit.
	return <-r.done
}

func buildNewEvents(set *MeterSet, events []event.Event) []store.NewEvent {
	out := make([]store.NewEvent, len(events))
	for i := range events {
		ev := &events[i]
		out[i] = store.NewEvent{
			ID: ev.ID, Source: ev.Source, Type: ev.Type, Subject: ev.Subject,
			Time: ev.Time, Raw: ev.Raw,
			Contributions: set.Contributions(ev),
		}
	}
	return out
}

func (p *Pipeline) run() {
	for {
		select {
		case r := <-p.reqs:
			p.commit(p.gather(r))
		case <-p.quit:
			// Commit what was queued before shutdown, until no Submit call
			// that passed the closed check is left.
			for {
				select {
				case r := <-p.reqs:
					p.commit(p.gather(r))
					continue
				default:
				}
				if p.pending.Load() == 0 {
					return
				}
				time.Sleep(time.Millisecond)
			}
		}
	}
}

// gather takes first and every request already waiting, up to the batch cap.
func (p *Pipeline) gather(first *request) []*request {
	batch := []*request{first}
	n := len(first.events)
	for n < p.cfg.MaxBatchEvents {
		select {
		case r := <-p.reqs:
			batch = append(batch, r)
			n += len(r.events)
		default:
			return batch
		}
	}
	return batch
}

func (p *Pipeline) commit(batch []*request) {
	p.exclMu.RLock()
	defer p.exclMu.RUnlock()
	start := time.Now()
	cur := p.meters.Load()
	total := 0
	for _, r := range batch {
		if r.set != cur {
			// Meters changed while the request waited: recompute.
			r.events = buildNewEvents(cur, r.raw)
		}
		total += len(r.events)
	}
	all := batch[0].events
	if len(batch) > 1 {
		all = make([]store.NewEvent, 0, total)
		for _, r := range batch {
			all = append(all, r.events...)
		}
	}
	ingestedAt := p.now().UTC()
	cur.cancel(all, ingestedAt)
	res, err := p.store.AppendEvents(context.Background(), all, ingestedAt)
	if err != nil {
		p.log.Error("commit failed", "events", total, "requests", len(batch), "err", err)
		err = fmt.Errorf("store events: %w", err)
	}
	if p.metrics != nil {
		p.metrics.observeCommit(res, total, time.Since(start), err, cur)
	}
	for _, r := range batch {
		r.done <- err
	}
}

// Exclusive runs fn while no events are being written: between commits.
func (p *Pipeline) Exclusive(ctx context.Context, fn func(ctx context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p.exclMu.Lock()
	defer p.exclMu.Unlock()
	return fn(ctx)
}

// MetersStable runs fn while no meter definition or projection changes, so
// that a reader sees a definition and the rollups built for it together.
func (p *Pipeline) MetersStable(fn func() error) error {
	p.exclMu.RLock()
	defer p.exclMu.RUnlock()
	return fn()
}

// Close stops accepting events, commits everything already queued and
// waits for the writer to finish.
func (p *Pipeline) Close() {
	p.closeOnce.Do(func() {
		p.closed.Store(true)
		close(p.quit)
		<-p.done
	})
}
