package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/tally-metering/tally/internal/meter"
	"github.com/tally-metering/tally/internal/store"
)

type rollupKey struct {
	meterID, subject, groupKey string
	minute                     int64
}

type uniqueKey struct {
	rollupKey
	value string
}

// eventsPerInsert is how many events one INSERT statement carries.
const eventsPerInsert = 100

func insertEventsSQL(n int) string {
	var b strings.Builder
	b.WriteString("INSERT INTO events (seq, source, id, type, subject, time_us, ingested_us, raw) VALUES ")
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?,?,?,?,?)")
	}
	b.WriteString(" ON CONFLICT (source, id, subject) DO NOTHING")
	return b.String()
}

var fullInsertSQL = insertEventsSQL(eventsPerInsert)

// rollupsPerUpsert is how many cells one rollup upsert statement carries
// (11 bound values each, well under SQLite's limit of 32,766).
const rollupsPerUpsert = 100

// upsertRollupsSQL writes n cells of one meter, merging each into the row
// already stored for it. Only the fields agg reads are merged: the others
// are zero in every state built for agg (meter.State.Observe), so merging
// them would only cost calls of the decimal functions. known is false for
// a meter whose aggregation is not known here: then every field is merged.
func upsertRollupsSQL(n int, agg meter.Aggregation, known bool) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO rollups
 (meter_id, subject, minute, group_key, count, sum, min, max, latest, latest_us, latest_seq) VALUES `)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?,?,?,?,?,?,?,?)")
	}
	b.WriteString(`
 ON CONFLICT (meter_id, subject, minute, group_key) DO UPDATE SET
  count = count + excluded.count`)
	all := !known
	if all || agg == meter.Sum || agg == meter.Avg {
		b.WriteString(",\n  sum = dec_add(sum, excluded.sum)")
	}
	if all || agg == meter.Min {
		b.WriteString(",\n  min = dec_min(min, excluded.min)")
	}
	if all || agg == meter.Max {
		b.WriteString(",\n  max = dec_max(max, excluded.max)")
	}
	if all || agg == meter.Latest {
		b.WriteString(`,
  latest = CASE WHEN excluded.latest_us > latest_us OR (excluded.latest_us = latest_us AND excluded.latest_seq > latest_seq) THEN excluded.latest ELSE latest END,
  latest_seq = CASE WHEN excluded.latest_us > latest_us OR (excluded.latest_us = latest_us AND excluded.latest_seq > latest_seq) THEN excluded.latest_seq ELSE latest_seq END,
  latest_us = MAX(latest_us, excluded.latest_us)`)
	}
	return b.String()
}

const insertUniqueSQL = `INSERT INTO unique_values (meter_id, subject, minute, group_key, value)
 VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`

const insertEventErrorSQL = `INSERT INTO event_errors (seq, meter_id, message) VALUES (?, ?, ?)
 ON CONFLICT (seq, meter_id) DO UPDATE SET message = excluded.message`

// insertEvents inserts events with seqs first, first+1, … and marks in
// inserted which of them were new. A statement that inserted all its rows
// (the usual case) needs no read-back; otherwise the new rows are found by
// their seqs.
func insertEvents(ctx context.Context, tx *sql.Tx, events []store.NewEvent, first, ingestedUS int64, inserted []bool) error {
	var full *sql.Stmt
	args := make([]any, 0, 8*eventsPerInsert)
	for start := 0; start < len(events); start += eventsPerInsert {
		end := min(start+eventsPerInsert, len(events))
		args = args[:0]
		for i := start; i < end; i++ {
			ev := &events[i]
			args = append(args, first+int64(i), ev.Source, ev.ID, ev.Type, ev.Subject, ev.Time.UnixMicro(), ingestedUS, []byte(ev.Raw))
		}
		var res sql.Result
		var err error
		if end-start == eventsPerInsert {
			if full == nil {
				if full, err = tx.PrepareContext(ctx, fullInsertSQL); err != nil {
					return err
				}
				defer full.Close()
			}
			res, err = full.ExecContext(ctx, args...)
		} else {
			res, err = tx.ExecContext(ctx, insertEventsSQL(end-start), args...)
		}
		if err != nil {
			return fmt.Errorf("insert events %d..%d: %w", start, end-1, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if int(n) == end-start {
			for i := start; i < end; i++ {
				inserted[i] = true
			}
			continue
		}
		if n == 0 {
			continue
		}
		rows, err := tx.QueryContext(ctx, "SELECT seq FROM events WHERE seq BETWEEN ? AND ?", first+int64(start), first+int64(end-1))
		if err != nil {
			return err
		}
		for rows.Next() {
			var seq int64
			if err := rows.Scan(&seq); err != nil {
				rows.Close()
				return err
			}
			inserted[seq-first] = true
		}
		if err := rows.Close(); err != nil {
			return err
		}
	}
	return nil
}

// AppendEvents implements store.Events. The events and their distinct
// values and errors are written in one durable transaction; their rollup
// deltas go to the overlay (see overlay.go), flushed with a later commit.
//
// Only the insert and commit hold the writer lock: computing and merging
// the rollup deltas happens after it is released, so that with two
// callers one batch's deltas are merged while the next batch is written.
// AppendEvents returns once its deltas are merged, so a query made after
// it returns sees the events.
func (db *DB) AppendEvents(ctx context.Context, events []store.NewEvent, ingestedAt time.Time) (store.AppendResult, error) {
	res := store.AppendResult{}
	if len(events) == 0 {
		return res, nil
	}
	first, inserted, err := db.commitEvents(ctx, events, ingestedAt, &res, true)
	var fe *flushError
	if errors.As(err, &fe) {
		// The rollup flush failed, not the events: commit them without
		// it, so a flush problem never rejects incoming usage.
		db.flushFailed(fe.err)
		res = store.AppendResult{}
		first, inserted, err = db.commitEvents(ctx, events, ingestedAt, &res, false)
	}
	if err != nil {
		return res, err
	}
	// The batch is committed: its deltas go straight into the overlay.
	db.ov.mu.Lock()
	for i := range events {
		if inserted[i] {
			ev := &events[i]
			db.ov.addLocked(ev.Subject, store.MinuteOf(ev.Time), ev.Time.UnixMicro(), first+int64(i), ev.Contributions)
		}
	}
	delete(db.ov.pending, first)
	db.ov.cond.Broadcast()
	db.ov.mu.Unlock()
	return res, nil
}

// commitEvents inserts events, their distinct values and errors, flushing
// the overlay into the same transaction when due, and commits. On success
// the batch is registered as pending in the overlay under its first seq.
func (db *DB) commitEvents(ctx context.Context, events []store.NewEvent, ingestedAt time.Time, res *store.AppendResult, mayFlush bool) (int64, []bool, error) {
	db.mu.Lock()
	defer db.mu.Unlock()

	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, nil, fmt.Errorf("append events: begin: %w", err)
	}
	defer tx.Rollback()

	first := db.nextSeq
	inserted := make([]bool, len(events))
	if err := insertEvents(ctx, tx, events, first, ingestedAt.UnixMicro(), inserted); err != nil {
		return 0, nil, fmt.Errorf("append events: %w", err)
	}
	var uniques map[uniqueKey]struct{}
	var errs []store.EventError
	for i := range events {
		if !inserted[i] {
			res.Duplicates++
			continue
		}
		res.Inserted++
		ev := &events[i]
		seq := first + int64(i)
		for _, c := range ev.Contributions {
			if c.Err != "" {
				errs = append(errs, store.EventError{Seq: seq, MeterID: c.MeterID, Message: c.Err})
				if res.InvalidByMeter == nil {
					res.InvalidByMeter = make(map[string]int)
				}
				res.InvalidByMeter[c.MeterID]++
				continue
			}
			if c.Aggregation == meter.UniqueCount {
				if uniques == nil {
					uniques = make(map[uniqueKey]struct{})
				}
				uniques[uniqueKey{rollupKey{c.MeterID, ev.Subject, c.GroupKey, store.MinuteOf(ev.Time)}, c.Unique}] = struct{}{}
			}
		}
	}
	if err := writeUniquesAndErrors(ctx, tx, uniques, errs); err != nil {
		return 0, nil, fmt.Errorf("append events: %w", err)
	}
	last := first + int64(len(events)) - 1

	flush := mayFlush && db.ov.due(db.opts)
	end := 0
	if flush {
		// Write the next slice of the flush in progress into this
		// transaction, starting one if none is. A flush must hold every
		// batch committed before it began, so wait for their merges; this
		// batch's own deltas stay out (they are merged after the commit,
		// and replayed after a crash since they lie after flush_seq).
		db.ov.mu.Lock()
		defer db.ov.mu.Unlock()
		if db.ov.flushing == nil {
			db.ov.waitMergedLocked()
			db.ov.freezeLocked(first - 1)
		}
		if end, err = writeSliceLocked(ctx, tx, db.ov, db.opts); err != nil {
			return 0, nil, &flushError{fmt.Errorf("flush rollups: %w", err)}
		}
	}
	if err := tx.Commit(); err != nil {
		if flush {
			return 0, nil, &flushError{fmt.Errorf("commit with rollup flush: %w", err)}
		}
		return 0, nil, fmt.Errorf("append events: commit: %w", err)
	}
	db.nextSeq = last + 1
	if flush {
		db.ov.advanceLocked(end)
		db.ov.pending[first] = true
	} else {
		db.ov.mu.Lock()
		db.ov.pending[first] = true
		db.ov.mu.Unlock()
	}
	return first, inserted, nil
}

// writeUniquesAndErrors stores distinct values and event errors inside tx.
func writeUniquesAndErrors(ctx context.Context, tx *sql.Tx, uniques map[uniqueKey]struct{}, errs []store.EventError) error {
	if len(uniques) > 0 {
		st, err := tx.PrepareContext(ctx, insertUniqueSQL)
		if err != nil {
			return err
		}
		defer st.Close()
		for k := range uniques {
			if _, err := st.ExecContext(ctx, k.meterID, k.subject, k.minute, k.groupKey, k.value); err != nil {
				return fmt.Errorf("insert unique value: %w", err)
			}
		}
	}
	if len(errs) > 0 {
		st, err := tx.PrepareContext(ctx, insertEventErrorSQL)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, e := range errs {
			if _, err := st.ExecContext(ctx, e.Seq, e.MeterID, e.Message); err != nil {
				return fmt.Errorf("insert event error: %w", err)
			}
		}
	}
	return nil
}

// ListEvents implements store.Events.
func (db *DB) ListEvents(ctx context.Context, f store.EventFilter) ([]store.StoredEvent, error) {
	var where []string
	var args []any
	if !f.From.IsZero() {
		where = append(where, "time_us >= ?")
		args = append(args, f.From.UnixMicro())
	}
	if !f.To.IsZero() {
		where = append(where, "time_us < ?")
		args = append(args, f.To.UnixMicro())
	}
	if f.Subject != "" {
		where = append(where, "subject = ?")
		args = append(args, f.Subject)
	}
	if len(f.Subjects) > 0 {
		where = append(where, "subject IN ("+placeholders(len(f.Subjects))+")")
		for _, s := range f.Subjects {
			args = append(args, s)
		}
	}
	for _, sub := range slices.Sorted(maps.Keys(f.Within)) {
		// Events of sub count only in its spans (whole minutes, so an
		// event's minute is in a span exactly when its time is).
		spans := f.Within[sub]
		cond := make([]string, 0, len(spans))
		args = append(args, sub)
		for _, sp := range spans {
			cond = append(cond, "(time_us >= ? AND time_us < ?)")
			args = append(args, sp.From.UnixMicro(), sp.To.UnixMicro())
		}
		if len(cond) == 0 {
			cond = append(cond, "0")
		}
		where = append(where, "(subject <> ? OR "+strings.Join(cond, " OR ")+")")
	}
	if f.Type != "" {
		where = append(where, "type = ?")
		args = append(args, f.Type)
	}
	if f.ID != "" {
		where = append(where, "id = ?")
		args = append(args, f.ID)
	}
	q := "SELECT seq, source, id, type, subject, time_us, ingested_us, raw FROM events"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY seq DESC"
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := db.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	out, err := scanEvents(rows)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	if err := db.attachErrors(ctx, out); err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	if err := attachCorrections(ctx, db.r, out); err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	return out, nil
}

func scanEvents(rows *sql.Rows) ([]store.StoredEvent, error) {
	defer rows.Close()
	var out []store.StoredEvent
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

func scanEvent(rows *sql.Rows) (store.StoredEvent, error) {
	var e store.StoredEvent
	var timeUS, ingUS int64
	var raw []byte
	if err := rows.Scan(&e.Seq, &e.Source, &e.ID, &e.Type, &e.Subject, &timeUS, &ingUS, &raw); err != nil {
		return e, err
	}
	e.Time = time.UnixMicro(timeUS).UTC()
	e.IngestedAt = time.UnixMicro(ingUS).UTC()
	e.Raw = raw
	return e, nil
}

// errorsPerQuery bounds the events whose errors one query reads, so that
// it stays under SQLite's limit on bound variables (32,766).
const errorsPerQuery = 1000

func (db *DB) attachErrors(ctx context.Context, evs []store.StoredEvent) error {
	for start := 0; start < len(evs); start += errorsPerQuery {
		if err := db.attachErrorsOnce(ctx, evs[start:min(start+errorsPerQuery, len(evs))]); err != nil {
			return err
		}
	}
	return nil
}

func (db *DB) attachErrorsOnce(ctx context.Context, evs []store.StoredEvent) error {
	if len(evs) == 0 {
		return nil
	}
	idx := make(map[int64]int, len(evs))
	args := make([]any, 0, len(evs))
	for i, e := range evs {
		idx[e.Seq] = i
		args = append(args, e.Seq)
	}
	rows, err := db.r.QueryContext(ctx, "SELECT seq, message FROM event_errors WHERE seq IN ("+placeholders(len(args))+") ORDER BY seq, meter_id", args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var seq int64
		var msg string
		if err := rows.Scan(&seq, &msg); err != nil {
			return err
		}
		i := idx[seq]
		evs[i].ValidationErrors = append(evs[i].ValidationErrors, msg)
	}
	return rows.Err()
}

// ScanEvents implements store.Events.
func (db *DB) ScanEvents(ctx context.Context, eventType string, fn func(store.StoredEvent) error) error {
	return db.scanEventsAfter(ctx, 0, eventType, fn)
}

// scanEventsAfter calls fn for events with seq > after, in seq order. It
// reads in pages so that no read transaction stays open for the whole scan.
func (db *DB) scanEventsAfter(ctx context.Context, after int64, eventType string, fn func(store.StoredEvent) error) error {
	const page = 5000
	for {
		q := "SELECT seq, source, id, type, subject, time_us, ingested_us, raw FROM events WHERE seq > ?"
		args := []any{after}
		if eventType != "" {
			q += " AND type = ?"
			args = append(args, eventType)
		}
		q += fmt.Sprintf(" ORDER BY seq LIMIT %d", page)
		rows, err := db.r.QueryContext(ctx, q, args...)
		if err != nil {
			return fmt.Errorf("scan events: %w", err)
		}
		batch, err := scanEvents(rows)
		if err != nil {
			return fmt.Errorf("scan events: %w", err)
		}
		if err := attachCorrections(ctx, db.r, batch); err != nil {
			return fmt.Errorf("scan events: %w", err)
		}
		for _, e := range batch {
			if err := fn(e); err != nil {
				return err
			}
		}
		if len(batch) < page {
			return nil
		}
		after = batch[len(batch)-1].Seq
	}
}

// flushError marks a failure of the rollup flush riding in an ingest
// transaction.
type flushError struct{ err error }

func (e *flushError) Error() string { return e.err.Error() }
func (e *flushError) Unwrap() error { return e.err }

// flushFailed records a failed flush; the overlay keeps the deltas and the
// next due commit tries again.
func (db *DB) flushFailed(err error) {
	db.ov.mu.Lock()
	db.ov.flushErrors++
	db.ov.lastFlushErr = err
	db.ov.last = time.Now() // wait a full interval before trying again
	db.ov.mu.Unlock()
}

// Health reports a problem the store has that needs an operator: a rollup
// flush failing since the last one that succeeded. Usage is still taken in
// (and queries still see it, from memory) while it fails.
func (db *DB) Health() error {
	db.ov.mu.RLock()
	defer db.ov.mu.RUnlock()
	if db.ov.lastFlushErr != nil {
		return fmt.Errorf("writing rollups to the database fails (%d attempts): %w", db.ov.flushErrors, db.ov.lastFlushErr)
	}
	return nil
}
