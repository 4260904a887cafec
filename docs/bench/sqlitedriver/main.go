// Command sqlitedriver measures tally's ingest transaction on the two
// candidate embedded SQLite drivers:
//
//   - github.com/mattn/go-sqlite3 (cgo)
//   - modernc.org/sqlite (pure Go, C translated to Go)
//
// It is its own Go module so that it is not part of tally's `go test ./...`.
// See ../../sqlite-driver.md for the results and the decision.
//
// One run = one fresh database file, one writer goroutine, -events events
// ingested in transactions of one of -batches events. Each transaction does
// what tally's store does on ingest:
//
//  1. INSERT every event with ON CONFLICT(source,id) DO NOTHING and find out
//     which rows were new (RowsAffected per row, or RETURNING for the
//     multi-row shape); 0.5% of events are client retries that must come
//     back as not new;
//  2. fold only the new events into per-minute rollups in Go (3 meters);
//  3. upsert the rollups, sorted in primary-key order, with ON CONFLICT DO
//     UPDATE, adding decimal sums exactly through the Go-registered SQL
//     function dec_add (and dec_min/dec_max);
//  4. COMMIT with synchronous=FULL (durable).
//
// Event generation is not timed; steps 1-4 are. Both drivers get
// byte-identical input (fixed seed), and runs are interleaved
// (run 1: mattn then modernc, run 2: modernc then mattn, ...) so that
// background load on a shared machine hits both drivers alike. After each
// run the database is checked: one row per new event, rollup counts and the
// exact decimal cost total match the generator's.
//
// Usage (see ../../sqlite-driver.md for results):
//
//	go run . -events 1000000                                        # the decision matrix
//	go run . -events 200000 -shapes single,multi -ids seq,uuid      # statement shapes, id styles
//	go run . -events 1000000 -runs 1 -rollup-pk minute              # rollup key order
//	go run . -events 200000 -runs 1 -drivers modernc -cpuprofile /tmp/cpu.prof
package main

import (
	"cmp"
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	sqlite3 "github.com/mattn/go-sqlite3"
	"github.com/shopspring/decimal"
	"modernc.org/sqlite"
)

// ---------------------------------------------------------------------------
// Drivers and the dec_* SQL functions.

const (
	mattnDriverName   = "sqlite3_tally" // mattn driver with dec_* registered
	moderncDriverName = "sqlite"        // modernc's own name; dec_* registered globally
)

func init() {
	sql.Register(mattnDriverName, &sqlite3.SQLiteDriver{
		ConnectHook: func(c *sqlite3.SQLiteConn) error {
			// pure=true marks the function SQLITE_DETERMINISTIC.
			if err := c.RegisterFunc("dec_add", decAdd, true); err != nil {
				return err
			}
			if err := c.RegisterFunc("dec_min", decMin, true); err != nil {
				return err
			}
			return c.RegisterFunc("dec_max", decMax, true)
		},
	})
	wrap := func(f func(a, b string) (string, error)) func(*sqlite.FunctionContext, []driver.Value) (driver.Value, error) {
		return func(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
			a, ok1 := args[0].(string)
			b, ok2 := args[1].(string)
			if !ok1 || !ok2 {
				return nil, fmt.Errorf("dec_*: want two TEXT arguments, got %T, %T", args[0], args[1])
			}
			return f(a, b)
		}
	}
	sqlite.MustRegisterDeterministicScalarFunction("dec_add", 2, wrap(decAdd))
	sqlite.MustRegisterDeterministicScalarFunction("dec_min", 2, wrap(decMin))
	sqlite.MustRegisterDeterministicScalarFunction("dec_max", 2, wrap(decMax))
}

func parseDec2(a, b string) (decimal.Decimal, decimal.Decimal, error) {
	x, err := decimal.NewFromString(a)
	if err != nil {
		return x, x, err
	}
	y, err := decimal.NewFromString(b)
	return x, y, err
}

// decAdd adds two decimal strings exactly.
func decAdd(a, b string) (string, error) {
	x, y, err := parseDec2(a, b)
	if err != nil {
		return "", err
	}
	return x.Add(y).String(), nil
}

func decMin(a, b string) (string, error) {
	x, y, err := parseDec2(a, b)
	if err != nil {
		return "", err
	}
	if y.LessThan(x) {
		return b, nil
	}
	return a, nil
}

func decMax(a, b string) (string, error) {
	x, y, err := parseDec2(a, b)
	if err != nil {
		return "", err
	}
	if y.GreaterThan(x) {
		return b, nil
	}
	return a, nil
}

// ---------------------------------------------------------------------------
// Schema and statements.

// pragmas are run, in this order, on the single connection before the
// schema is created. They are read back and printed for each driver.
func pragmas(cacheKiB int) []string {
	return []string{
		"PRAGMA busy_timeout=5000",
		"PRAGMA journal_mode=WAL",
		"PRAGMA synchronous=FULL",
		fmt.Sprintf("PRAGMA cache_size=-%d", cacheKiB),
		"PRAGMA temp_store=MEMORY",
	}
}

func schema(pk string) string {
	return strings.Replace(schemaTmpl, "PRIMARY KEY(meter, subject, minute, group_key)", pk, 1)
}

const schemaTmpl = `
CREATE TABLE events(
	seq         INTEGER PRIMARY KEY,
	source      TEXT    NOT NULL,
	id          TEXT    NOT NULL,
	type        TEXT    NOT NULL,
	subject     TEXT    NOT NULL,
	time        INTEGER NOT NULL,
	ingested_at INTEGER NOT NULL,
	body        BLOB    NOT NULL
);
CREATE UNIQUE INDEX events_dedup ON events(source, id);
CREATE TABLE rollups(
	meter     INTEGER,
	subject   TEXT,
	group_key TEXT,
	minute    INTEGER,
	count     INTEGER,
	sum       TEXT,
	min       TEXT,
	max       TEXT,
	PRIMARY KEY(meter, subject, minute, group_key)
) WITHOUT ROWID;
`

const (
	eventCols   = "INSERT INTO events(source,id,type,subject,time,ingested_at,body) VALUES"
	eventTuple  = "(?,?,?,?,?,?,?)"
	eventNArg   = 7
	eventSingle = eventCols + eventTuple + " ON CONFLICT(source,id) DO NOTHING"
	// The multi-row shape needs RETURNING to learn which rows were new;
	// rows skipped by DO NOTHING are not returned.
	eventMultiTail = " ON CONFLICT(source,id) DO NOTHING RETURNING source,id"

	rollupCols  = "INSERT INTO rollups(meter,subject,group_key,minute,count,sum,min,max) VALUES"
	rollupTuple = "(?,?,?,?,?,?,?,?)"
	rollupNArg  = 8
	rollupTail  = ` ON CONFLICT(meter,subject,minute,group_key) DO UPDATE SET
	count = count + excluded.count,
	sum   = dec_add(sum, excluded.sum),
	min   = dec_min(min, excluded.min),
	max   = dec_max(max, excluded.max)`
	rollupSingle = rollupCols + rollupTuple + rollupTail
)

func multiSQL(head, tuple, tail string, n int) string {
	var b strings.Builder
	b.WriteString(head)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(tuple)
	}
	b.WriteString(tail)
	return b.String()
}

// ---------------------------------------------------------------------------
// Synthetic CloudEvents.

const (
	nSubjects = 10_000
	nSources  = 8
	nMeters   = 3 // 1: requests (count), 2: tokens (sum), 3: cost (decimal sum)
)

var (
	sources = func() []string {
		s := make([]string, nSources)
		for i := range s {
			s[i] = fmt.Sprintf("//gw-%d.api.acme.io", i)
		}
		return s
	}()
	subjects = func() []string {
		s := make([]string, nSubjects)
		for i := range s {
			s[i] = fmt.Sprintf("cust-%05d", i)
		}
		return s
	}()
	types   = []string{"com.acme.llm.completion", "com.acme.llm.embedding"}
	models  = []string{"gpt-small", "gpt-large", "embed-v3"}
	regions = []string{"eu-west-1", "us-east-1", "ap-south-1", "us-west-2"}
	// Unit price per token: cost = tokens * 0.0000025, exact decimal.
	pricePerToken = decimal.New(25, -7)
)

type event struct {
	source, id, typ, subject string
	subj                     int
	timeMs                   int64
	body                     []byte
	tokens                   int64
	cost                     decimal.Decimal
	dup                      bool // a client retry of an earlier event: must be rejected
}

type generator struct {
	rng     *rand.Rand
	uuidIDs bool
	prefix  string
	n       int64 // events generated
	startMs int64
	stepMs  float64 // simulated ingest rate
	dupFrac float64
	recent  []event // ring of recent originals, source of retries
	// Expected totals over new (non-duplicate) events.
	wantNew  int64
	wantCost decimal.Decimal
}

func newGenerator(seed uint64, uuidIDs bool, dupFrac float64, rate float64) *generator {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return &generator{
		rng:     rng,
		uuidIDs: uuidIDs,
		prefix:  fmt.Sprintf("r%08x", rng.Uint32()),
		startMs: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixMilli(),
		stepMs:  1000 / rate,
		dupFrac: dupFrac,
		recent:  make([]event, 0, 4096),
	}
}

func (g *generator) id() string {
	if !g.uuidIDs {
		return g.prefix + "-" + fmt.Sprintf("%010d", g.n)
	}
	// Random version-4 UUID text from the seeded PRNG.
	var b [16]byte
	hi, lo := g.rng.Uint64(), g.rng.Uint64()
	for i := range 8 {
		b[i] = byte(hi >> (56 - 8*i))
		b[8+i] = byte(lo >> (56 - 8*i))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:36], b[10:16])
	return string(s[:])
}

func (g *generator) next() event {
	defer func() { g.n++ }()
	if len(g.recent) > 0 && g.rng.Float64() < g.dupFrac {
		e := g.recent[g.rng.IntN(len(g.recent))]
		e.dup = true
		return e
	}
	e := event{
		source: sources[g.rng.IntN(nSources)],
		id:     g.id(),
		typ:    types[g.rng.IntN(len(types))],
		subj:   g.rng.IntN(nSubjects),
		timeMs: g.startMs + int64(float64(g.n)*g.stepMs),
		tokens: 1 + g.rng.Int64N(4000),
	}
	e.subject = subjects[e.subj]
	e.cost = decimal.NewFromInt(e.tokens).Mul(pricePerToken)
	// A realistic ~220-byte structured CloudEvent.
	b := make([]byte, 0, 256)
	b = append(b, `{"specversion":"1.0","id":"`...)
	b = append(b, e.id...)
	b = append(b, `","source":"`...)
	b = append(b, e.source...)
	b = append(b, `","type":"`...)
	b = append(b, e.typ...)
	b = append(b, `","subject":"`...)
	b = append(b, e.subject...)
	b = append(b, `","time":"`...)
	b = time.UnixMilli(e.timeMs).UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	b = append(b, `","data":{"tokens":`...)
	b = strconv.AppendInt(b, e.tokens, 10)
	b = append(b, `,"model":"`...)
	b = append(b, models[e.subj%len(models)]...)
	b = append(b, `","region":"`...)
	b = append(b, regions[e.subj%len(regions)]...)
	b = append(b, `"}}`...)
	e.body = b

	if len(g.recent) < cap(g.recent) {
		g.recent = append(g.recent, e)
	} else {
		g.recent[g.rng.IntN(len(g.recent))] = e
	}
	g.wantNew++
	g.wantCost = g.wantCost.Add(e.cost)
	return e
}

// ---------------------------------------------------------------------------
// Rollups.

type rollupKey struct {
	meter   int
	subject string
	minute  int64
	group   string
}

type agg struct {
	count         int64
	sum, min, max decimal.Decimal
}

func (a *agg) add(v decimal.Decimal) {
	if a.count == 0 {
		a.sum, a.min, a.max = v, v, v
	} else {
		a.sum = a.sum.Add(v)
		if v.LessThan(a.min) {
			a.min = v
		}
		if v.GreaterThan(a.max) {
			a.max = v
		}
	}
	a.count++
}

var decOne = decimal.NewFromInt(1)

// fold adds one new event to the batch's rollups: one row per meter.
// Meter 1 counts requests, meter 2 sums tokens by model, meter 3 sums cost
// by region; each subject has one model and one region, so a batch upserts
// 3 x (distinct subject, minute) rows.
func fold(m map[rollupKey]*agg, e *event) {
	minute := e.timeMs / 60_000
	keys := [nMeters]rollupKey{
		{1, e.subject, minute, ""},
		{2, e.subject, minute, models[e.subj%len(models)]},
		{3, e.subject, minute, regions[e.subj%len(regions)]},
	}
	vals := [nMeters]decimal.Decimal{decOne, decimal.NewFromInt(e.tokens), e.cost}
	for i, k := range keys {
		a := m[k]
		if a == nil {
			a = &agg{}
			m[k] = a
		}
		a.add(vals[i])
	}
}

// ---------------------------------------------------------------------------
// One run.

type config struct {
	driver  string // "mattn" | "modernc"
	shape   string // "single" | "multi"
	ids     string // "seq" | "uuid"
	batch   int
	events  int
	rows    int // rows per multi-row statement
	cache   int // KiB
	dupFrac float64
	rate    float64
	seed    uint64
	dir     string
	pk      string // rollups primary key order: "subject" | "minute"
}

var rollupPK = map[string]string{
	"subject": "PRIMARY KEY(meter, subject, minute, group_key)",
	"minute":  "PRIMARY KEY(meter, minute, subject, group_key)",
}

type result struct {
	config
	txTime     time.Duration // sum of BEGIN..COMMIT
	wall       time.Duration // whole ingest loop incl. generation
	cpu        time.Duration // process user+sys during transactions
	runq       time.Duration // runnable-but-not-running during transactions
	allocBytes uint64        // Go heap bytes allocated during transactions
	allocObjs  uint64
	dbBytes    int64 // after wal_checkpoint(TRUNCATE) and close
	rollupRows int64
	sqliteVer  string
}

func (r result) eventsPerSec() float64 { return float64(r.events) / r.txTime.Seconds() }

func sqlDriverName(d string) string {
	if d == "mattn" {
		return mattnDriverName
	}
	return moderncDriverName
}

func cpuNow() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runqWait is the time this process's threads spent runnable but waiting
// for a CPU (sum of field 2 of /proc/self/task/*/schedstat). On a shared
// machine it separates "other people's load" from driver cost.
func runqWait() time.Duration {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return 0
	}
	var total int64
	for _, e := range ents {
		b, err := os.ReadFile("/proc/self/task/" + e.Name() + "/schedstat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) >= 2 {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			total += n
		}
	}
	return time.Duration(total)
}

var allocSamples = []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}, {Name: "/gc/heap/allocs:objects"}}

func allocNow() (uint64, uint64) {
	metrics.Read(allocSamples)
	return allocSamples[0].Value.Uint64(), allocSamples[1].Value.Uint64()
}

func openDB(c config, path string) (*sql.DB, error) {
	db, err := sql.Open(sqlDriverName(c.driver), "file:"+path)
	if err != nil {
		return nil, err
	}
	// One connection: tally has a single writer, and the PRAGMAs below are
	// per connection.
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	for _, p := range pragmas(c.cache) {
		if _, err := db.Exec(p); err != nil {
			db.Close()
			return nil, fmt.Errorf("%s: %w", p, err)
		}
	}
	return db, nil
}

func run(c config) (res result, err error) {
	res.config = c
	ctx := context.Background()
	path := filepath.Join(c.dir, fmt.Sprintf("%s-%s-%s-%d.db", c.driver, c.shape, c.ids, c.batch))
	defer func() {
		for _, suf := range []string{"", "-wal", "-shm"} {
			os.Remove(path + suf)
		}
	}()
	db, err := openDB(c, path)
	if err != nil {
		return res, err
	}
	defer func() {
		if db != nil {
			db.Close()
		}
	}()
	if err := db.QueryRow("SELECT sqlite_version()").Scan(&res.sqliteVer); err != nil {
		return res, err
	}
	if _, err := db.Exec(schema(rollupPK[c.pk])); err != nil {
		return res, err
	}

	// Statements prepared once on the (single) connection and re-bound to
	// each transaction with tx.Stmt, which reuses the prepared statement.
	var insOne, upOne, insMulti, upMulti *sql.Stmt
	prep := func(q string) *sql.Stmt {
		s, e := db.Prepare(q)
		if e != nil && err == nil {
			err = fmt.Errorf("prepare: %w", e)
		}
		return s
	}
	if c.shape == "single" {
		insOne, upOne = prep(eventSingle), prep(rollupSingle)
	} else {
		insMulti = prep(multiSQL(eventCols, eventTuple, eventMultiTail, c.rows))
		upMulti = prep(multiSQL(rollupCols, rollupTuple, rollupTail, c.rows))
	}
	if err != nil {
		return res, err
	}

	gen := newGenerator(c.seed, c.ids == "uuid", c.dupFrac, c.rate)
	batch := make([]event, 0, c.batch)
	isNew := make([]bool, c.batch)
	args := make([]any, 0, c.rows*rollupNArg)
	aggs := make(map[rollupKey]*agg, 3*c.batch)
	keys := make([]rollupKey, 0, 3*c.batch)
	chunkIdx := make(map[[2]string]int, c.rows)

	runtime.GC()
	wallStart := time.Now()
	for done := 0; done < c.events; {
		batch = batch[:0]
		for len(batch) < c.batch && done+len(batch) < c.events {
			batch = append(batch, gen.next())
		}

		cpu0, rq0 := cpuNow(), runqWait()
		ab0, ao0 := allocNow()
		t0 := time.Now()

		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return res, err
		}
		ingestedAt := t0.UnixMilli()
		clear(isNew)

		// 1. Insert events, learn which are new.
		if c.shape == "single" {
			st := tx.Stmt(insOne)
			for i := range batch {
				e := &batch[i]
				r, err := st.ExecContext(ctx, e.source, e.id, e.typ, e.subject, e.timeMs, ingestedAt, e.body)
				if err != nil {
					tx.Rollback()
					return res, fmt.Errorf("insert: %w", err)
				}
				n, err := r.RowsAffected()
				if err != nil {
					tx.Rollback()
					return res, err
				}
				isNew[i] = n == 1
			}
		} else {
			full := tx.Stmt(insMulti)
			for lo := 0; lo < len(batch); lo += c.rows {
				hi := min(lo+c.rows, len(batch))
				args = args[:0]
				clear(chunkIdx)
				for i := lo; i < hi; i++ {
					e := &batch[i]
					args = append(args, e.source, e.id, e.typ, e.subject, e.timeMs, ingestedAt, e.body)
					k := [2]string{e.source, e.id}
					if _, ok := chunkIdx[k]; !ok {
						chunkIdx[k] = i
					}
				}
				st := full
				if hi-lo != c.rows {
					st, err = tx.Prepare(multiSQL(eventCols, eventTuple, eventMultiTail, hi-lo))
					if err != nil {
						tx.Rollback()
						return res, err
					}
				}
				rows, err := st.QueryContext(ctx, args...)
				if err != nil {
					tx.Rollback()
					return res, fmt.Errorf("insert: %w", err)
				}
				var k [2]string
				for rows.Next() {
					if err := rows.Scan(&k[0], &k[1]); err != nil {
						rows.Close()
						tx.Rollback()
						return res, err
					}
					isNew[chunkIdx[k]] = true
				}
				if err := rows.Close(); err != nil {
					tx.Rollback()
					return res, err
				}
				if err := rows.Err(); err != nil {
					tx.Rollback()
					return res, err
				}
			}
		}

		// 2. Fold the new events into rollups.
		clear(aggs)
		for i := range batch {
			if isNew[i] == batch[i].dup {
				tx.Rollback()
				return res, fmt.Errorf("event %d (%s/%s): driver says new=%v, but dup=%v", i, batch[i].source, batch[i].id, isNew[i], batch[i].dup)
			}
			if isNew[i] {
				fold(aggs, &batch[i])
			}
		}
		keys = keys[:0]
		for k := range aggs {
			keys = append(keys, k)
		}
		// Upsert in primary-key order: sequential B-tree access.
		if c.pk == "minute" {
			slices.SortFunc(keys, func(a, b rollupKey) int {
				return cmp.Or(cmp.Compare(a.meter, b.meter), cmp.Compare(a.minute, b.minute),
					strings.Compare(a.subject, b.subject), strings.Compare(a.group, b.group))
			})
		} else {
			slices.SortFunc(keys, func(a, b rollupKey) int {
				return cmp.Or(cmp.Compare(a.meter, b.meter), strings.Compare(a.subject, b.subject),
					cmp.Compare(a.minute, b.minute), strings.Compare(a.group, b.group))
			})
		}

		// 3. Upsert rollups.
		if c.shape == "single" {
			st := tx.Stmt(upOne)
			for _, k := range keys {
				a := aggs[k]
				if _, err := st.ExecContext(ctx, k.meter, k.subject, k.group, k.minute, a.count,
					a.sum.String(), a.min.String(), a.max.String()); err != nil {
					tx.Rollback()
					return res, fmt.Errorf("upsert: %w", err)
				}
			}
		} else {
			full := tx.Stmt(upMulti)
			for lo := 0; lo < len(keys); lo += c.rows {
				hi := min(lo+c.rows, len(keys))
				args = args[:0]
				for _, k := range keys[lo:hi] {
					a := aggs[k]
					args = append(args, k.meter, k.subject, k.group, k.minute, a.count,
						a.sum.String(), a.min.String(), a.max.String())
				}
				st := full
				if hi-lo != c.rows {
					st, err = tx.Prepare(multiSQL(rollupCols, rollupTuple, rollupTail, hi-lo))
					if err != nil {
						tx.Rollback()
						return res, err
					}
				}
				if _, err := st.ExecContext(ctx, args...); err != nil {
					tx.Rollback()
					return res, fmt.Errorf("upsert: %w", err)
				}
			}
		}

		// 4. Durable commit.
		if err := tx.Commit(); err != nil {
			return res, err
		}
		res.txTime += time.Since(t0)
		res.cpu += cpuNow() - cpu0
		res.runq += runqWait() - rq0
		ab1, ao1 := allocNow()
		res.allocBytes += ab1 - ab0
		res.allocObjs += ao1 - ao0
		done += len(batch)
	}
	res.wall = time.Since(wallStart)

	// Verify (untimed): every new event stored once, rollup counts and
	// exact decimal sums match what was generated.
	var nEvents, nReq int64
	if err := db.QueryRow("SELECT count(*) FROM events").Scan(&nEvents); err != nil {
		return res, err
	}
	if err := db.QueryRow("SELECT sum(count) FROM rollups WHERE meter=1").Scan(&nReq); err != nil {
		return res, err
	}
	if err := db.QueryRow("SELECT count(*) FROM rollups").Scan(&res.rollupRows); err != nil {
		return res, err
	}
	if nEvents != gen.wantNew || nReq != gen.wantNew {
		return res, fmt.Errorf("verify: events=%d, rollup count=%d, want %d", nEvents, nReq, gen.wantNew)
	}
	rows, err := db.Query("SELECT sum FROM rollups WHERE meter=3")
	if err != nil {
		return res, err
	}
	total := decimal.Zero
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			rows.Close()
			return res, err
		}
		total = total.Add(decimal.RequireFromString(s))
	}
	rows.Close()
	if !total.Equal(gen.wantCost) {
		return res, fmt.Errorf("verify: cost sum %s, want %s", total, gen.wantCost)
	}

	if _, err := db.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		return res, err
	}
	if err := db.Close(); err != nil {
		return res, err
	}
	db = nil
	for _, suf := range []string{"", "-wal"} {
		if fi, err := os.Stat(path + suf); err == nil {
			res.dbBytes += fi.Size()
		}
	}
	return res, nil
}

// ---------------------------------------------------------------------------
// Main: interleaved matrix, per-run lines, median summary.

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func modVersion(path string) string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == path {
				return m.Version
			}
		}
	}
	return "?"
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func main() { os.Exit(realMain()) }

func realMain() int {
	var (
		events  = flag.Int("events", 1_000_000, "events per run")
		runs    = flag.Int("runs", 3, "runs per configuration (median reported)")
		drivers = flag.String("drivers", "mattn,modernc", "drivers to compare")
		batches = flag.String("batches", "1000,10000", "events per transaction")
		shapes  = flag.String("shapes", "single", "statement shapes, comma-separated: single (prepared row-at-a-time Exec + RowsAffected), multi (-rows-row VALUES + RETURNING)")
		idModes = flag.String("ids", "seq", "event id styles, comma-separated: seq (run prefix + counter), uuid (random v4)")
		rows    = flag.Int("rows", 100, "rows per statement for the multi shape")
		cache   = flag.Int("cache-kib", 65536, "PRAGMA cache_size in KiB (negative form)")
		dupFrac = flag.Float64("dup", 0.005, "fraction of events that are client retries (must be deduplicated)")
		rate    = flag.Float64("rate", 1000, "simulated event rate (events/s of event time); sets how many minutes a batch spans")
		seed    = flag.Uint64("seed", 1, "PRNG seed")
		pk      = flag.String("rollup-pk", "subject", "rollups primary key order: subject = (meter,subject,minute,group_key), minute = (meter,minute,subject,group_key)")
		dirFlag = flag.String("dir", os.TempDir(), "parent directory for the temporary database directory")
		cpuProf = flag.String("cpuprofile", "", "write a CPU profile of the whole invocation to this file")
	)
	flag.Parse()
	fail := func(format string, a ...any) int {
		fmt.Fprintf(os.Stderr, format+"\n", a...)
		return 1
	}
	if _, ok := rollupPK[*pk]; !ok {
		return fail("unknown -rollup-pk %q", *pk)
	}
	var batchSizes []int
	for _, s := range splitList(*batches) {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			return fail("bad batch size %q", s)
		}
		batchSizes = append(batchSizes, n)
	}
	drv := splitList(*drivers)
	for _, d := range drv {
		if d != "mattn" && d != "modernc" {
			return fail("unknown driver %q", d)
		}
	}
	for _, s := range splitList(*shapes) {
		if s != "single" && s != "multi" {
			return fail("unknown shape %q", s)
		}
	}
	for _, s := range splitList(*idModes) {
		if s != "seq" && s != "uuid" {
			return fail("unknown id style %q", s)
		}
	}
	if *cpuProf != "" {
		f, err := os.Create(*cpuProf)
		if err != nil {
			return fail("%v", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fail("%v", err)
		}
		defer pprof.StopCPUProfile()
	}

	dir, err := os.MkdirTemp(*dirFlag, "tally-sqlitebench-")
	if err != nil {
		return fail("%v", err)
	}
	defer os.RemoveAll(dir)

	fmt.Printf("# tally SQLite driver benchmark\n")
	fmt.Printf("go: %s %s/%s, GOMAXPROCS=%d, NumCPU=%d\n", runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.GOMAXPROCS(0), runtime.NumCPU())
	fmt.Printf("mattn/go-sqlite3 %s, modernc.org/sqlite %s, shopspring/decimal %s\n",
		modVersion("github.com/mattn/go-sqlite3"), modVersion("modernc.org/sqlite"), modVersion("github.com/shopspring/decimal"))
	fmt.Printf("dir: %s\n", dir)
	fmt.Printf("events/run=%d runs=%d rows/stmt(multi)=%d dup=%.3f rate=%.0f ev/s rollup %s\n",
		*events, *runs, *rows, *dupFrac, *rate, rollupPK[*pk])
	fmt.Printf("pragmas: %s\n\n", strings.Join(pragmas(*cache), "; "))

	// Read the PRAGMAs back once per driver: proof they took effect.
	for _, d := range drv {
		c := config{driver: d, cache: *cache}
		p := filepath.Join(dir, "pragma-"+d+".db")
		db, err := openDB(c, p)
		if err != nil {
			return fail("%s: %v", d, err)
		}
		var ver, jm, fn string
		var sync, bt, cs, ts int
		for _, q := range []struct {
			sql string
			dst any
		}{
			{"SELECT sqlite_version()", &ver},
			{"PRAGMA journal_mode", &jm},
			{"PRAGMA synchronous", &sync},
			{"PRAGMA busy_timeout", &bt},
			{"PRAGMA cache_size", &cs},
			{"PRAGMA temp_store", &ts},
			{"SELECT dec_add('0.1','0.2') || ' ' || dec_min('10','9.5') || ' ' || dec_max('-1','-1.5')", &fn},
		} {
			if err := db.QueryRow(q.sql).Scan(q.dst); err != nil {
				db.Close()
				return fail("%s: %s: %v", d, q.sql, err)
			}
		}
		db.Close()
		fmt.Printf("%-8s sqlite %s journal_mode=%s synchronous=%d busy_timeout=%d cache_size=%d temp_store=%d; dec_add/min/max: %s\n",
			d, ver, jm, sync, bt, cs, ts, fn)
	}
	fmt.Println()

	type cfgKey struct {
		shape, ids string
		batch      int
		driver     string
	}
	results := map[cfgKey][]result{}
	var order []cfgKey
	start := time.Now()
	fmt.Printf("%-3s %-7s %-6s %-4s %6s %10s %8s %8s %8s %9s %8s %9s %8s\n",
		"run", "driver", "shape", "ids", "batch", "events/s", "tx s", "runq s", "wall s", "cpu µs/ev", "KiB/ev", "allocs/ev", "db MiB")
	for r := 0; r < *runs; r++ {
		for _, ids := range splitList(*idModes) {
			for _, shape := range splitList(*shapes) {
				for _, b := range batchSizes {
					// Interleave: alternate which driver goes first, run by run.
					ds := slices.Clone(drv)
					if r%2 == 1 {
						slices.Reverse(ds)
					}
					for _, d := range ds {
						c := config{driver: d, shape: shape, ids: ids, batch: b, events: *events, rows: *rows,
							cache: *cache, dupFrac: *dupFrac, rate: *rate, seed: *seed, dir: dir, pk: *pk}
						res, err := run(c)
						if err != nil {
							return fail("%s %s %s %d: %v", d, shape, ids, b, err)
						}
						k := cfgKey{shape, ids, b, d}
						if _, ok := results[k]; !ok {
							order = append(order, k)
						}
						results[k] = append(results[k], res)
						n := float64(res.events)
						fmt.Printf("%-3d %-7s %-6s %-4s %6d %10.0f %8.2f %8.2f %8.2f %9.2f %8.2f %9.1f %8.1f\n",
							r+1, d, shape, ids, b, res.eventsPerSec(), res.txTime.Seconds(), res.runq.Seconds(), res.wall.Seconds(),
							float64(res.cpu.Microseconds())/n, float64(res.allocBytes)/n/1024, float64(res.allocObjs)/n,
							float64(res.dbBytes)/(1<<20))
					}
				}
			}
		}
	}
	fmt.Printf("\ntotal %.0fs\n\n", time.Since(start).Seconds())

	// Summary: medians per configuration.
	fmt.Println("## Medians")
	fmt.Println()
	fmt.Println("| ids | shape | batch | driver | events/s median | events/s min–max | CPU µs/event | runq wait s | Go alloc KiB/event | DB MiB |")
	fmt.Println("|---|---|---:|---|---:|---:|---:|---:|---:|---:|")
	slices.SortStableFunc(order, func(a, b cfgKey) int {
		return cmp.Or(strings.Compare(b.ids, a.ids), strings.Compare(b.shape, a.shape), cmp.Compare(a.batch, b.batch), strings.Compare(a.driver, b.driver))
	})
	type med struct{ eps, cpu float64 }
	meds := map[cfgKey]med{}
	for _, k := range order {
		rs := results[k]
		var eps, cpu, rq, kib, mib []float64
		for _, r := range rs {
			n := float64(r.events)
			eps = append(eps, r.eventsPerSec())
			cpu = append(cpu, float64(r.cpu.Microseconds())/n)
			rq = append(rq, r.runq.Seconds())
			kib = append(kib, float64(r.allocBytes)/n/1024)
			mib = append(mib, float64(r.dbBytes)/(1<<20))
		}
		meds[k] = med{median(eps), median(cpu)}
		fmt.Printf("| %s | %s | %d | %s | %.0f | %.0f–%.0f | %.1f | %.1f | %.2f | %.0f |\n",
			k.ids, k.shape, k.batch, k.driver, median(eps), slices.Min(eps), slices.Max(eps),
			median(cpu), median(rq), median(kib), median(mib))
	}
	fmt.Println()
	if len(drv) == 2 {
		fmt.Printf("## %s relative to %s (medians)\n\n", drv[1], drv[0])
		for _, k := range order {
			if k.driver != drv[0] {
				continue
			}
			o := k
			o.driver = drv[1]
			a, okA := meds[k]
			b, okB := meds[o]
			if !okA || !okB {
				continue
			}
			fmt.Printf("- %s ids, %s, batch %d: events/s x%.2f, CPU/event x%.2f\n", k.ids, k.shape, k.batch, b.eps/a.eps, b.cpu/a.cpu)
		}
	}
	return 0
}
