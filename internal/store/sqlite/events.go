package sqlite

import (
	"context"
	"database/sql"
	"fmt"
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

const insertEventSQL = `INSERT INTO events (seq, source, id, type, subject, time_us, ingested_us, raw)
VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (source, id) DO NOTHING`

const upsertRollupSQL = `INSERT INTO rollups
 (meter_id, subject, minute, group_key, count, sum, min, max, latest, latest_us, latest_seq)
 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
 ON CONFLICT (meter_id, subject, minute, group_key) DO UPDATE SET
  count = count + excluded.count,
  sum = dec_add(sum, excluded.sum),
  min = dec_min(min, excluded.min),
  max = dec_max(max, excluded.max),
  latest = CASE WHEN excluded.latest_us > latest_us OR (excluded.latest_us = latest_us AND excluded.latest_seq > latest_seq) THEN excluded.latest ELSE latest END,
  latest_seq = CASE WHEN excluded.latest_us > latest_us OR (excluded.latest_us = latest_us AND excluded.latest_seq > latest_seq) THEN excluded.latest_seq ELSE latest_seq END,
  latest_us = MAX(latest_us, excluded.latest_us)`

// upsertCountSQL serves meters without values (COUNT, UNIQUE_COUNT), sparing
// the decimal functions.
const upsertCountSQL = `INSERT INTO rollups
 (meter_id, subject, minute, group_key, count, sum, min, max, latest, latest_us, latest_seq)
 VALUES (?, ?, ?, ?, ?, '0', '0', '0', '0', 0, 0)
 ON CONFLICT (meter_id, subject, minute, group_key) DO UPDATE SET count = count + excluded.count`

const insertUniqueSQL = `INSERT INTO unique_values (meter_id, subject, minute, group_key, value)
 VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`

const insertEventErrorSQL = `INSERT INTO event_errors (seq, meter_id, message) VALUES (?, ?, ?)
 ON CONFLICT (seq, meter_id) DO UPDATE SET message = excluded.message`

// AppendEvents implements store.Events.
func (db *DB) AppendEvents(ctx context.Context, events []store.NewEvent, ingestedAt time.Time) (store.AppendResult, error) {
	res := store.AppendResult{}
	if len(events) == 0 {
		return res, nil
	}
	db.mu.Lock()
	defer db.mu.Unlock()

	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return res, fmt.Errorf("append events: begin: %w", err)
	}
	defer tx.Rollback()

	ins, err := tx.PrepareContext(ctx, insertEventSQL)
	if err != nil {
		return res, fmt.Errorf("append events: %w", err)
	}
	defer ins.Close()

	seq := db.nextSeq
	ingestedUS := ingestedAt.UnixMicro()
	states := make(map[rollupKey]*meter.State)
	counts := make(map[rollupKey]int64)
	var uniques map[uniqueKey]struct{}
	var errs []store.EventError

	for i := range events {
		ev := &events[i]
		r, err := ins.ExecContext(ctx, seq, ev.Source, ev.ID, ev.Type, ev.Subject, ev.Time.UnixMicro(), ingestedUS, []byte(ev.Raw))
		if err != nil {
			return res, fmt.Errorf("append events: insert event %d: %w", i, err)
		}
		n, err := r.RowsAffected()
		if err != nil {
			return res, fmt.Errorf("append events: %w", err)
		}
		if n == 0 {
			res.Duplicates++
			continue
		}
		res.Inserted++
		minute := store.MinuteOf(ev.Time)
		timeUS := ev.Time.UnixMicro()
		for _, c := range ev.Contributions {
			if c.Err != "" {
				errs = append(errs, store.EventError{Seq: seq, MeterID: c.MeterID, Message: c.Err})
				if res.InvalidByMeter == nil {
					res.InvalidByMeter = make(map[string]int)
				}
				res.InvalidByMeter[c.MeterID]++
				continue
			}
			k := rollupKey{meterID: c.MeterID, subject: ev.Subject, groupKey: c.GroupKey, minute: minute}
			switch c.Aggregation {
			case meter.Count:
				counts[k]++
			case meter.UniqueCount:
				counts[k]++
				if uniques == nil {
					uniques = make(map[uniqueKey]struct{})
				}
				uniques[uniqueKey{k, c.Unique}] = struct{}{}
			default:
				s := states[k]
				if s == nil {
					s = &meter.State{}
					states[k] = s
				}
				s.Add(c.Value, timeUS, seq)
			}
		}
		seq++
	}

	if err := writeDerived(ctx, tx, states, counts, uniques, errs); err != nil {
		return res, fmt.Errorf("append events: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return res, fmt.Errorf("append events: commit: %w", err)
	}
	db.nextSeq = seq
	return res, nil
}

// writeDerived merges rollup states, counts, distinct values and event
// errors into the tables inside tx.
func writeDerived(ctx context.Context, tx *sql.Tx, states map[rollupKey]*meter.State, counts map[rollupKey]int64, uniques map[uniqueKey]struct{}, errs []store.EventError) error {
	if len(states) > 0 {
		st, err := tx.PrepareContext(ctx, upsertRollupSQL)
		if err != nil {
			return err
		}
		defer st.Close()
		for k, s := range states {
			if _, err := st.ExecContext(ctx, k.meterID, k.subject, k.minute, k.groupKey, s.Count,
				s.Sum.String(), s.Min.String(), s.Max.String(), s.Latest.String(), s.LatestTime, s.LatestSeq); err != nil {
				return fmt.Errorf("upsert rollup: %w", err)
			}
		}
	}
	if len(counts) > 0 {
		st, err := tx.PrepareContext(ctx, upsertCountSQL)
		if err != nil {
			return err
		}
		defer st.Close()
		for k, n := range counts {
			if _, err := st.ExecContext(ctx, k.meterID, k.subject, k.minute, k.groupKey, n); err != nil {
				return fmt.Errorf("upsert count rollup: %w", err)
			}
		}
	}
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

func (db *DB) attachErrors(ctx context.Context, evs []store.StoredEvent) error {
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

// ScanEvents implements store.Events. It reads in pages so that no read
// transaction stays open for the whole scan.
func (db *DB) ScanEvents(ctx context.Context, eventType string, fn func(store.StoredEvent) error) error {
	const page = 5000
	var after int64
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
