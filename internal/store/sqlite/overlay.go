package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tally-metering/tally/internal/meter"
	"github.com/tally-metering/tally/internal/store"
)

// The rollups table is written behind: each ingest transaction stores its
// raw events durably, while their rollup deltas are merged into an
// in-memory overlay that queries read together with the table. The overlay
// is flushed into the table inside a later ingest transaction (every
// FlushInterval or FlushKeys, and before any meter change or close), in the
// same transaction that advances projection_state.applied_seq. Events after
// applied_seq are replayed from the raw events by Recover after a crash, so
// nothing is lost or counted twice. This turns one rollup upsert per
// (meter, subject, minute, group) per commit into one per flush, which is
// what lets ingest keep up with many subjects.

type cellKey struct {
	subject, groupKey string
	minute            int64
}

// subjectCells holds one meter's cell states by subject, so that a query for
// some subjects reads only theirs.
type subjectCells map[string]map[cellKey]*meter.State

type overlay struct {
	// mu is held for reading while a query reads the table and the overlay,
	// and for writing while a flush commits and clears the overlay, so a
	// query sees a delta exactly once.
	mu      sync.RWMutex
	byMeter map[string]subjectCells
	// aggs is each meter's aggregation, so merges touch only its fields.
	aggs map[string]meter.Aggregation
	keys int
	last time.Time
	// pending holds the first seq of each batch committed but not yet
	// merged; cond (on mu) signals each merge.
	pending map[int64]bool
	cond    *sync.Cond
	// flushErrors counts flushes that failed; lastFlushErr is the latest.
	flushErrors  int64
	lastFlushErr error
}

func newOverlay() *overlay {
	o := &overlay{byMeter: make(map[string]subjectCells), aggs: make(map[string]meter.Aggregation), last: time.Now(), pending: make(map[int64]bool)}
	o.cond = sync.NewCond(&o.mu)
	return o
}

// waitMergedLocked waits until every committed batch is merged; the caller
// holds mu for writing.
func (o *overlay) waitMergedLocked() {
	for len(o.pending) > 0 {
		o.cond.Wait()
	}
}

func (o *overlay) clearLocked() {
	o.lastFlushErr = nil
	o.byMeter = make(map[string]subjectCells)
	o.keys = 0
	o.last = time.Now()
}

// due reports whether the overlay should be flushed with the next commit.
func (o *overlay) due(limits Options) bool {
	o.mu.RLock()
	defer o.mu.RUnlock()
	if o.keys == 0 {
		return false
	}
	return o.keys >= limits.FlushKeys || time.Since(o.last) >= limits.FlushInterval
}

// appendTo adds the overlay's states for one meter and query to out, the
// table's rows for the query: a cell in both is merged into its row, so
// that each cell is returned once, with its whole state.
func (o *overlay) appendTo(out []store.Rollup, q store.RollupQuery) []store.Rollup {
	bySubject := o.byMeter[q.MeterID]
	if len(bySubject) == 0 {
		return out
	}
	stored := make(map[cellKey]int, len(out))
	for i := range out {
		stored[cellKey{subject: out[i].Subject, groupKey: out[i].GroupKey, minute: out[i].Minute}] = i
	}
	agg := o.aggs[q.MeterID]
	add := func(cells map[cellKey]*meter.State) {
		for k, s := range cells {
			if k.minute < q.From || k.minute >= q.To {
				continue
			}
			if i, ok := stored[k]; ok {
				out[i].State.MergeFor(agg, *s)
				continue
			}
			out = append(out, store.Rollup{MeterID: q.MeterID, Subject: k.subject, GroupKey: k.groupKey, Minute: k.minute, State: *s})
		}
	}
	if len(q.Subjects) > 0 {
		seen := make(map[string]bool, len(q.Subjects))
		for _, sub := range q.Subjects {
			if !seen[sub] {
				seen[sub] = true
				add(bySubject[sub])
			}
		}
		return out
	}
	for _, cells := range bySubject {
		add(cells)
	}
	return out
}

// writeOverlayLocked upserts the overlay's states into the rollups table
// and records seq as applied, inside tx. The caller holds o.mu (read or
// write) and clears the overlay after a successful commit.
func writeOverlay(ctx context.Context, tx *sql.Tx, o *overlay, appliedSeq int64) error {
	if err := upsertStates(ctx, tx, o.byMeter, o.aggs); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "UPDATE projection_state SET applied_seq = ? WHERE id = 1", appliedSeq); err != nil {
		return fmt.Errorf("record applied seq: %w", err)
	}
	return nil
}

// upsertStates merges states into the rollups table inside tx. aggs gives
// each meter's aggregation, so that only its fields are merged; a meter
// missing from it has every field merged. The cells are written in the
// table's key order, many per statement: a flush touches tens of thousands
// of cells, and in key order consecutive cells mostly land on the same
// leaf page.
func upsertStates(ctx context.Context, tx *sql.Tx, states map[string]subjectCells, aggs map[string]meter.Aggregation) error {
	var cells []cellRef
	args := make([]any, 0, 11*rollupsPerUpsert)
	for _, id := range slices.Sorted(maps.Keys(states)) {
		cells = sortedCells(cells[:0], states[id])
		agg, known := aggs[id]
		var full *sql.Stmt
		for start := 0; start < len(cells); start += rollupsPerUpsert {
			end := min(start+rollupsPerUpsert, len(cells))
			args = args[:0]
			for _, c := range cells[start:end] {
				s := c.s
				args = append(args, id, c.k.subject, c.k.minute, c.k.groupKey, s.Count,
					s.Sum.String(), s.Min.String(), s.Max.String(), s.Latest.String(), s.LatestTime, s.LatestSeq)
			}
			var err error
			if end-start == rollupsPerUpsert {
				if full == nil {
					if full, err = tx.PrepareContext(ctx, upsertRollupsSQL(rollupsPerUpsert, agg, known)); err != nil {
						return err
					}
					defer full.Close()
				}
				_, err = full.ExecContext(ctx, args...)
			} else {
				_, err = tx.ExecContext(ctx, upsertRollupsSQL(end-start, agg, known), args...)
			}
			if err != nil {
				return fmt.Errorf("upsert rollups: %w", err)
			}
		}
	}
	return nil
}

type cellRef struct {
	k cellKey
	s *meter.State
}

// sortedCells appends one meter's cells to out in the rollups table's key
// order after meter_id: subject, minute, group_key (SQLite compares TEXT
// bytewise, as Go compares strings).
func sortedCells(out []cellRef, bySubject subjectCells) []cellRef {
	for _, cells := range bySubject {
		for k, s := range cells {
			out = append(out, cellRef{k, s})
		}
	}
	slices.SortFunc(out, func(a, b cellRef) int {
		return cmp.Or(strings.Compare(a.k.subject, b.k.subject), cmp.Compare(a.k.minute, b.k.minute), strings.Compare(a.k.groupKey, b.k.groupKey))
	})
	return out
}

// flushLocked writes the overlay into the table in its own transaction. The
// caller holds db.mu.
func (db *DB) flushLocked(ctx context.Context) error {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("flush rollups: %w", err)
	}
	defer tx.Rollback()
	db.ov.mu.Lock()
	defer db.ov.mu.Unlock()
	db.ov.waitMergedLocked()
	if err := writeOverlay(ctx, tx, db.ov, db.nextSeq-1); err != nil {
		return fmt.Errorf("flush rollups: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("flush rollups: %w", err)
	}
	db.ov.clearLocked()
	return nil
}

// Flush writes every pending rollup delta into the rollups table.
func (db *DB) Flush(ctx context.Context) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.flushLocked(ctx)
}

// Recover implements store.Rollups: it replays the events committed after
// the last rollup flush (after a crash) into the overlay, using contribs to
// compute what each adds to the meters, then flushes.
func (db *DB) Recover(ctx context.Context, contribs func(store.StoredEvent) ([]store.Contribution, error)) (int, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	var applied int64
	if err := db.w.QueryRowContext(ctx, "SELECT applied_seq FROM projection_state WHERE id = 1").Scan(&applied); err != nil {
		return 0, fmt.Errorf("recover rollups: %w", err)
	}
	n := 0
	err := db.scanEventsAfter(ctx, applied, "", func(e store.StoredEvent) error {
		cs, err := contribs(e)
		if err != nil {
			return err
		}
		n++
		db.ov.mu.Lock()
		db.ov.addLocked(e.Subject, store.MinuteOf(e.Time), e.Time.UnixMicro(), e.Seq, cs)
		db.ov.mu.Unlock()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("recover rollups: %w", err)
	}
	if err := db.flushLocked(ctx); err != nil {
		return n, err
	}
	return n, nil
}

// addContributions folds one event's valid contributions into deltas and
// returns how many new cells it made.
func addContributions(deltas map[string]subjectCells, subject string, minute, timeUS, seq int64, cs []store.Contribution) int {
	added := 0
	for i := range cs {
		c := &cs[i]
		if c.Err != "" {
			continue
		}
		bySubject := deltas[c.MeterID]
		if bySubject == nil {
			bySubject = make(subjectCells)
			deltas[c.MeterID] = bySubject
		}
		cells := bySubject[subject]
		if cells == nil {
			cells = make(map[cellKey]*meter.State)
			bySubject[subject] = cells
		}
		k := cellKey{subject: subject, groupKey: c.GroupKey, minute: minute}
		s := cells[k]
		if s == nil {
			s = &meter.State{}
			cells[k] = s
			added++
		}
		s.Observe(c.Aggregation, c.Value, timeUS, seq)
	}
	return added
}

// addLocked folds one event's contributions straight into the overlay; the
// caller holds mu.
func (o *overlay) addLocked(subject string, minute, timeUS, seq int64, cs []store.Contribution) {
	for i := range cs {
		if cs[i].Err == "" {
			o.aggs[cs[i].MeterID] = cs[i].Aggregation
		}
	}
	o.keys += addContributions(o.byMeter, subject, minute, timeUS, seq, cs)
}
