// Package sqlite is tally's embedded store: one SQLite database in WAL mode
// with durable (synchronous=FULL) commits. See docs/sqlite-driver.md for why
// the driver is mattn/go-sqlite3.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	sqlite3 "github.com/mattn/go-sqlite3"
	"github.com/shopspring/decimal"

	"github.com/tally-metering/tally/internal/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

const driverName = "sqlite3_tally"

var registerOnce sync.Once

// registerDriver registers a driver whose connections know tally's exact
// decimal functions, used to merge rollup states inside upserts.
func registerDriver() {
	registerOnce.Do(func() {
		sql.Register(driverName, &sqlite3.SQLiteDriver{
			ConnectHook: func(c *sqlite3.SQLiteConn) error {
				if err := c.RegisterFunc("dec_add", decAdd, true); err != nil {
					return err
				}
				if err := c.RegisterFunc("dec_min", decMin, true); err != nil {
					return err
				}
				return c.RegisterFunc("dec_max", decMax, true)
			},
		})
	})
}

func decAdd(a, b string) (string, error) {
	x, err := decimal.NewFromString(a)
	if err != nil {
		return "", err
	}
	y, err := decimal.NewFromString(b)
	if err != nil {
		return "", err
	}
	return x.Add(y).String(), nil
}

func decMin(a, b string) (string, error) {
	x, err := decimal.NewFromString(a)
	if err != nil {
		return "", err
	}
	y, err := decimal.NewFromString(b)
	if err != nil {
		return "", err
	}
	if y.LessThan(x) {
		return b, nil
	}
	return a, nil
}

func decMax(a, b string) (string, error) {
	x, err := decimal.NewFromString(a)
	if err != nil {
		return "", err
	}
	y, err := decimal.NewFromString(b)
	if err != nil {
		return "", err
	}
	if y.GreaterThan(x) {
		return b, nil
	}
	return a, nil
}

// DB is the SQLite store. It implements store.Store.
type DB struct {
	path string
	w    *sql.DB // the single writer connection
	r    *sql.DB // a pool of read-only connections

	opts Options
	ov   *overlay

	lock     *os.File // holds the data directory's lock
	ckpt     *sql.DB  // the checkpointer's connection
	stopCkpt chan struct{}
	ckptDone chan struct{}

	mu      sync.Mutex // serialises writers; guards nextSeq
	nextSeq int64
}

// Options tune the store.
type Options struct {
	// FlushInterval and FlushKeys bound how long and how large the
	// in-memory rollup overlay grows before it is written to the rollups
	// table (defaults 2s and 100,000 cells).
	FlushInterval time.Duration
	FlushKeys     int
	// FlushSliceCells and FlushSliceTime bound the cells of a due flush
	// one ingest transaction writes (defaults 8,192 cells and 20ms, at
	// least 1,024 cells); the rest follow in the next ones, so that no
	// ingest call waits for a whole flush. While the next flush is due by
	// size already, the time bound is lifted; once the overlay holds
	// FlushBacklogCells (default 4 × FlushKeys), a flush in progress is
	// written whole.
	FlushSliceCells   int
	FlushSliceTime    time.Duration
	FlushBacklogCells int
}

var _ store.Store = (*DB)(nil)

// ErrLocked is returned (wrapped) by Open when another process has the data
// directory open.
var ErrLocked = errors.New("data directory locked")

func unlock(f *os.File) {
	if f != nil {
		f.Close() // closing the file releases the lock
	}
}

// FileName is the database file's name inside the data directory.
const FileName = "tally.db"

// Open opens (creating if needed) the store in directory dir and applies
// pending migrations.
func Open(ctx context.Context, dir string, opts Options) (*DB, error) {
	registerDriver()
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = 2 * time.Second
	}
	if opts.FlushKeys <= 0 {
		opts.FlushKeys = 100_000
	}
	if opts.FlushSliceCells <= 0 {
		opts.FlushSliceCells = 8192
	}
	if opts.FlushSliceTime <= 0 {
		opts.FlushSliceTime = 20 * time.Millisecond
	}
	if opts.FlushBacklogCells <= 0 {
		opts.FlushBacklogCells = 4 * opts.FlushKeys
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, FileName)
	common := "_journal_mode=WAL&_busy_timeout=10000&_foreign_keys=on&_cache_size=-65536"
	w, err := sql.Open(driverName, "file:"+path+"?"+common+"&_synchronous=FULL&_txlock=immediate")
	if err != nil {
		unlock(lock)
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	db := &DB{path: path, w: w, opts: opts, ov: newOverlay(), lock: lock}
	if err := db.migrate(ctx); err != nil {
		w.Close()
		unlock(lock)
		return nil, err
	}
	r, err := sql.Open(driverName, "file:"+path+"?"+common+"&mode=ro&_query_only=1")
	if err != nil {
		w.Close()
		unlock(lock)
		return nil, fmt.Errorf("open %s for reading: %w", path, err)
	}
	r.SetMaxOpenConns(8)
	r.SetMaxIdleConns(8)
	db.r = r
	// Checkpoints (copying the write-ahead log into the database file) run
	// on their own connection in the background rather than inside a
	// commit, so that ingest never waits for them.
	if _, err := w.ExecContext(ctx, "PRAGMA wal_autocheckpoint=0"); err != nil {
		db.Close()
		return nil, fmt.Errorf("configure checkpoints: %w", err)
	}
	// A short busy timeout: a checkpoint that can't get its locks at once
	// gives up until the next tick rather than holding off ingest.
	c, err := sql.Open(driverName, "file:"+path+"?_journal_mode=WAL&_busy_timeout=100&_synchronous=FULL")
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s for checkpoints: %w", path, err)
	}
	c.SetMaxOpenConns(1)
	db.ckpt = c
	db.stopCkpt = make(chan struct{})
	db.ckptDone = make(chan struct{})
	go db.checkpointLoop()
	// Seqs taken by skipped duplicates leave gaps, and applied_seq may lie in
	// such a gap: new events must start above both, or a replay after a
	// crash would skip them. Correction marks take seqs from the same
	// sequence.
	if err := w.QueryRowContext(ctx, `SELECT MAX(COALESCE((SELECT MAX(seq) FROM events), 0), (SELECT MAX(applied_seq, flush_seq) FROM projection_state WHERE id = 1), COALESCE((SELECT MAX(seq) FROM correction_marks), 0)) + 1`).Scan(&db.nextSeq); err != nil {
		db.Close()
		return nil, fmt.Errorf("read event sequence: %w", err)
	}
	return db, nil
}

// Close flushes pending rollups and closes the database.
func (db *DB) Close() error {
	var errs []error
	if db.w != nil && db.ov != nil {
		errs = append(errs, db.Flush(context.Background()))
	}
	if db.ckpt != nil {
		close(db.stopCkpt)
		<-db.ckptDone
		errs = append(errs, db.ckpt.Close())
		if db.w != nil {
			_, err := db.w.Exec("PRAGMA wal_checkpoint(TRUNCATE)")
			errs = append(errs, err)
		}
	}
	if db.r != nil {
		errs = append(errs, db.r.Close())
	}
	if db.w != nil {
		errs = append(errs, db.w.Close())
	}
	unlock(db.lock)
	db.lock = nil
	return errors.Join(errs...)
}

// checkpointInterval is how often the background checkpointer runs, and
// walLimit the write-ahead log size past which it truncates the log.
const (
	checkpointInterval = 500 * time.Millisecond
	walLimit           = 128 << 20
)

func (db *DB) checkpointLoop() {
	defer close(db.ckptDone)
	t := time.NewTicker(checkpointInterval)
	defer t.Stop()
	for {
		select {
		case <-db.stopCkpt:
			return
		case <-t.C:
			// PASSIVE never blocks writers or readers; it copies what it can.
			_, _ = db.ckpt.Exec("PRAGMA wal_checkpoint(PASSIVE)")
			// Under steady writes the log is never idle long enough to be
			// reused, so it would grow without end: past walLimit, restart it
			// (this waits for the current transaction and briefly holds off
			// the next; the frames are already copied by then).
			if fi, err := os.Stat(db.path + "-wal"); err == nil && fi.Size() > walLimit {
				_, _ = db.ckpt.Exec("PRAGMA wal_checkpoint(TRUNCATE)")
			}
		}
	}
}

// Path is the database file's path.
func (db *DB) Path() string { return db.path }

// Size is the bytes used by the database file and its write-ahead log.
func (db *DB) Size(ctx context.Context) (int64, error) {
	var total int64
	for _, p := range []string{db.path, db.path + "-wal"} {
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, err
		}
		total += fi.Size()
	}
	return total, nil
}

func (db *DB) migrate(ctx context.Context) error {
	if _, err := db.w.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	sort.Strings(names)
	for _, name := range names {
		base := filepath.Base(name)
		v, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		if err != nil {
			return fmt.Errorf("migrate: bad migration name %s", base)
		}
		var n int
		if err := db.w.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = ?`, v).Scan(&n); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		if n > 0 {
			continue
		}
		body, err := migrations.ReadFile(name)
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		tx, err := db.w.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("migrate %s: %w", base, err)
		}
		if _, err := tx.ExecContext(ctx, string(body)); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate %s: %w", base, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version) VALUES (?)`, v); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate %s: %w", base, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migrate %s: %w", base, err)
		}
	}
	return nil
}

func isUniqueViolation(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && se.Code == sqlite3.ErrConstraint
}

func placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?,", n-1) + "?"
}
