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

	"github.com/shopspring/decimal"

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
//
// A due flush is not written in one transaction: with 10,000 subjects it
// holds tens of thousands of cells, and every ingest call would wait for
// them. Instead the overlay is frozen (new deltas go to a fresh one) and
// its cells are written in key order, FlushSliceCells per ingest
// transaction. Each such transaction records in projection_state how far
// the flush got (flush_seq and the last cell written); the last one
// advances applied_seq to flush_seq. After a crash Recover replays the
// events up to flush_seq only into the cells past that point.

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
	// flushing is a flush in progress: the cells frozen when it began, of
	// which a prefix is already in the table.
	flushing *flushRun
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
	o.flushing = nil
}

// due reports whether the next commit should write (a slice of) a flush:
// one is in progress, or the overlay is due to be flushed.
func (o *overlay) due(limits Options) bool {
	o.mu.RLock()
	defer o.mu.RUnlock()
	if o.flushing != nil && o.lastFlushErr == nil {
		return true
	}
	if o.keys == 0 && o.flushing == nil {
		return false
	}
	// After a failed flush, wait as long as before a new one.
	return o.keys >= limits.FlushKeys || time.Since(o.last) >= limits.FlushInterval
}

// flushRun is a flush in progress: the overlay's cells when it began, in
// key order, with the seq it makes applied once all are written.
type flushRun struct {
	byMeter map[string]subjectCells
	cells   []cellRef
	next    int   // cells[:next] are in the table
	seq     int64 // every event up to seq is in these cells
}

// written reports whether cell (meterID, k) of the run is in the table.
func (f *flushRun) written(meterID string, k cellKey) bool {
	return f.next > 0 && compareCells(meterID, k, f.cells[f.next-1]) <= 0
}

// freezeLocked starts a flush of everything merged so far, the events up
// to seq; new deltas go to an empty overlay. The caller holds mu and has
// waited for pending merges.
func (o *overlay) freezeLocked(seq int64) {
	f := &flushRun{byMeter: o.byMeter, seq: seq}
	for _, id := range slices.Sorted(maps.Keys(o.byMeter)) {
		f.cells = sortedCells(f.cells, id, o.byMeter[id])
	}
	o.flushing = f
	o.byMeter = make(map[string]subjectCells)
	o.keys = 0
	o.last = time.Now()
}

// sliceChunk is how many cells a slice writes between looks at the clock.
const sliceChunk = 1024

// writeSliceLocked writes the next cells of the flush in progress inside
// tx and records how far it got, or, with the last cells, that everything
// up to the run's seq is applied. A slice writes up to FlushSliceCells
// cells and stops after FlushSliceTime, so that the transaction it rides
// in stays short whatever a cell costs (a cell of a backfill lands on a
// page of its own). It takes the time limit off while the new overlay is
// already due by size (the flush falls behind), and writes everything once
// the new overlay holds FlushBacklogCells, so the overlay stays bounded.
// It returns the new end of the written prefix, for advanceLocked after
// the commit. The caller holds mu.
func writeSliceLocked(ctx context.Context, tx *sql.Tx, o *overlay, limits Options) (int, error) {
	f := o.flushing
	stop := min(f.next+limits.FlushSliceCells, len(f.cells))
	if o.keys >= limits.FlushBacklogCells {
		stop = len(f.cells)
	}
	timed := o.keys < limits.FlushKeys
	deadline := time.Now().Add(limits.FlushSliceTime)
	end := f.next
	for end < stop {
		next := min(end+sliceChunk, stop)
		if err := upsertCells(ctx, tx, f.cells[end:next], o.aggs); err != nil {
			return 0, err
		}
		end = next
		if timed && time.Now().After(deadline) {
			break
		}
	}
	if end == len(f.cells) {
		return end, recordApplied(ctx, tx, f.seq)
	}
	last := f.cells[end-1]
	if _, err := tx.ExecContext(ctx, `UPDATE projection_state SET flush_seq = ?, flush_meter = ?, flush_subject = ?, flush_minute = ?, flush_group = ? WHERE id = 1`,
		f.seq, last.meterID, last.k.subject, last.k.minute, last.k.groupKey); err != nil {
		return 0, fmt.Errorf("record flush progress: %w", err)
	}
	return end, nil
}

// advanceLocked marks the flush's cells up to end as written, once the
// transaction holding them has committed. The caller holds mu.
func (o *overlay) advanceLocked(end int) {
	f := o.flushing
	f.next = end
	o.lastFlushErr = nil
	if end == len(f.cells) {
		o.flushing = nil
	}
}

// recordApplied records that the rollups table holds every event up to
// seq, and that no flush is in progress.
func recordApplied(ctx context.Context, tx *sql.Tx, seq int64) error {
	if _, err := tx.ExecContext(ctx, `UPDATE projection_state SET applied_seq = ?, flush_seq = 0, flush_meter = '', flush_subject = '', flush_minute = 0, flush_group = '' WHERE id = 1`, seq); err != nil {
		return fmt.Errorf("record applied seq: %w", err)
	}
	return nil
}

// flushProgress is projection_state as stored: events after applied are
// not in the table, except that those up to flushSeq (when not 0) are in
// the cells up to and including last.
type flushProgress struct {
	applied, flushSeq int64
	last              cellRef
}

type queryRower interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func readFlushProgress(ctx context.Context, q queryRower) (flushProgress, error) {
	var p flushProgress
	err := q.QueryRowContext(ctx, "SELECT applied_seq, flush_seq, flush_meter, flush_subject, flush_minute, flush_group FROM projection_state WHERE id = 1").
		Scan(&p.applied, &p.flushSeq, &p.last.meterID, &p.last.k.subject, &p.last.k.minute, &p.last.k.groupKey)
	return p, err
}

// unwritten returns the contributions of an event (seq, subject, minute)
// that the table does not hold yet: all of them, except for an event up to
// flushSeq, whose cells up to the last one written hold it.
func (p flushProgress) unwritten(seq int64, subject string, minute int64, cs []store.Contribution) []store.Contribution {
	if p.flushSeq == 0 || seq > p.flushSeq {
		return cs
	}
	var out []store.Contribution
	for _, c := range cs {
		if c.Err == "" && compareCells(c.MeterID, cellKey{subject: subject, groupKey: c.GroupKey, minute: minute}, p.last) <= 0 {
			continue
		}
		out = append(out, c)
	}
	return out
}

// appendTo adds the overlay's states for one meter and query to out, the
// table's rows for the query: a cell in both is merged into its row, so
// that each cell is returned once, with its whole state.
func (o *overlay) appendTo(out []store.Rollup, q store.RollupQuery) []store.Rollup {
	bySubject := o.byMeter[q.MeterID]
	var frozen subjectCells
	if o.flushing != nil {
		frozen = o.flushing.byMeter[q.MeterID]
	}
	if len(bySubject) == 0 && len(frozen) == 0 {
		return out
	}
	stored := make(map[cellKey]int, len(out))
	for i := range out {
		stored[cellKey{subject: out[i].Subject, groupKey: out[i].GroupKey, minute: out[i].Minute}] = i
	}
	agg := o.aggs[q.MeterID]
	add := func(cells map[cellKey]*meter.State, skipWritten bool) {
		for k, s := range cells {
			if k.minute < q.From || k.minute >= q.To {
				continue
			}
			if skipWritten && o.flushing.written(q.MeterID, k) {
				continue
			}
			if i, ok := stored[k]; ok {
				out[i].State.MergeFor(agg, *s)
				continue
			}
			stored[k] = len(out)
			out = append(out, store.Rollup{MeterID: q.MeterID, Subject: k.subject, GroupKey: k.groupKey, Minute: k.minute, State: *s})
		}
	}
	if len(q.Subjects) > 0 {
		seen := make(map[string]bool, len(q.Subjects))
		for _, sub := range q.Subjects {
			if !seen[sub] {
				seen[sub] = true
				add(frozen[sub], true)
				add(bySubject[sub], false)
			}
		}
		return out
	}
	for _, cells := range frozen {
		add(cells, true)
	}
	for _, cells := range bySubject {
		add(cells, false)
	}
	return out
}

// writeOverlay writes what the overlay holds into the rollups table, the
// rest of a flush in progress and the deltas since, and records seq as
// applied, inside tx. The caller holds o.mu and clears the overlay after a
// successful commit.
func writeOverlay(ctx context.Context, tx *sql.Tx, o *overlay, appliedSeq int64) error {
	if f := o.flushing; f != nil {
		if err := upsertCells(ctx, tx, f.cells[f.next:], o.aggs); err != nil {
			return err
		}
	}
	if err := upsertStates(ctx, tx, o.byMeter, o.aggs); err != nil {
		return err
	}
	return recordApplied(ctx, tx, appliedSeq)
}

// upsertStates merges states into the rollups table inside tx, in the
// table's key order (see upsertCells).
func upsertStates(ctx context.Context, tx *sql.Tx, states map[string]subjectCells, aggs map[string]meter.Aggregation) error {
	var cells []cellRef
	for _, id := range slices.Sorted(maps.Keys(states)) {
		cells = sortedCells(cells, id, states[id])
	}
	return upsertCells(ctx, tx, cells, aggs)
}

// upsertCells merges cells, sorted by meter, into the rollups table inside
// tx. aggs gives each meter's aggregation, so that only its fields are
// merged; a meter missing from it has every field merged. A flush touches
// tens of thousands of cells: they go many per statement, and in key order
// consecutive cells mostly land on the same leaf page.
func upsertCells(ctx context.Context, tx *sql.Tx, cells []cellRef, aggs map[string]meter.Aggregation) error {
	args := make([]any, 0, 11*rollupsPerUpsert)
	for len(cells) > 0 {
		id := cells[0].meterID
		n := 1
		for n < len(cells) && cells[n].meterID == id {
			n++
		}
		run := cells[:n]
		cells = cells[n:]
		agg, known := aggs[id]
		var full *sql.Stmt
		for start := 0; start < len(run); start += rollupsPerUpsert {
			end := min(start+rollupsPerUpsert, len(run))
			args = args[:0]
			for _, c := range run[start:end] {
				s := c.s
				args = append(args, id, c.k.subject, c.k.minute, c.k.groupKey, s.Count,
					decimalText(s.Sum), decimalText(s.Min), decimalText(s.Max), decimalText(s.Latest), s.LatestTime, s.LatestSeq)
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

// decimalText is d as stored: the fields an aggregation does not use are
// zero, and cost no formatting.
func decimalText(d decimal.Decimal) string {
	if d.IsZero() {
		return "0"
	}
	return d.String()
}

// cellRef is one meter's cell and its state.
type cellRef struct {
	meterID string
	k       cellKey
	s       *meter.State
}

// compareCells orders cells as the rollups table's key does: meter_id,
// subject, minute, group_key (SQLite compares TEXT bytewise, as Go
// compares strings).
func compareCells(meterID string, k cellKey, c cellRef) int {
	return cmp.Or(strings.Compare(meterID, c.meterID), strings.Compare(k.subject, c.k.subject),
		cmp.Compare(k.minute, c.k.minute), strings.Compare(k.groupKey, c.k.groupKey))
}

// sortedCells appends one meter's cells to out in key order. The cells
// are already grouped by subject: sorting the subjects and then each
// subject's few cells is several times cheaper than sorting them all.
func sortedCells(out []cellRef, meterID string, bySubject subjectCells) []cellRef {
	for _, sub := range slices.Sorted(maps.Keys(bySubject)) {
		from := len(out)
		for k, s := range bySubject[sub] {
			out = append(out, cellRef{meterID, k, s})
		}
		slices.SortFunc(out[from:], func(a, b cellRef) int {
			return cmp.Or(cmp.Compare(a.k.minute, b.k.minute), strings.Compare(a.k.groupKey, b.k.groupKey))
		})
	}
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
	prog, err := readFlushProgress(ctx, db.w)
	if err != nil {
		return 0, fmt.Errorf("recover rollups: %w", err)
	}
	n := 0
	err = db.scanEventsAfter(ctx, prog.applied, "", func(e store.StoredEvent) error {
		cs, err := contribs(e)
		if err != nil {
			return err
		}
		n++
		minute := store.MinuteOf(e.Time)
		cs = prog.unwritten(e.Seq, e.Subject, minute, cs)
		db.ov.mu.Lock()
		db.ov.addLocked(e.Subject, minute, e.Time.UnixMicro(), e.Seq, cs)
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
