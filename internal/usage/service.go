package usage

import (
	"context"
	"fmt"
	"math"

	"github.com/tally-metering/tally/internal/meter"
	"github.com/tally-metering/tally/internal/store"
)

// RollupReader is the part of store.Rollups that queries need; every
// store.Rollups is one.
type RollupReader interface {
	QueryRollups(ctx context.Context, q store.RollupQuery) ([]store.Rollup, error)
	QueryUniqueValues(ctx context.Context, q store.RollupQuery) ([]store.UniqueValue, error)
}

var _ RollupReader = store.Rollups(nil)

// Service answers usage queries from the store.
type Service struct {
	Store RollupReader
}

// Query validates q, reads the rollups it needs (the distinct values for a
// UNIQUE_COUNT meter) and computes the rows. A validation error is returned
// as is (an errors.Join of field errors); store errors are wrapped.
func (s *Service) Query(ctx context.Context, q Query) (Result, error) {
	if err := q.Validate(); err != nil {
		return Result{}, err
	}
	rq := RollupQuery(q)
	var (
		rollups []store.Rollup
		uniques []store.UniqueValue
		err     error
	)
	if q.Meter.Aggregation == meter.UniqueCount {
		uniques, err = s.Store.QueryUniqueValues(ctx, rq)
	} else {
		rollups, err = s.Store.QueryRollups(ctx, rq)
	}
	if err != nil {
		return Result{}, fmt.Errorf("query usage of meter %s: %w", q.Meter.Slug, err)
	}
	rows, err := Compute(q, rollups, uniques)
	if err != nil {
		return Result{}, err
	}
	return Result{From: q.From, To: q.To, WindowSize: q.WindowSize, Rows: rows}, nil
}

// RollupQuery is the store query that reads what q needs: the meter's
// minutes in [From, To) (math.MinInt64 and math.MaxInt64 stand for an
// absent bound) for q's subjects.
func RollupQuery(q Query) store.RollupQuery {
	rq := store.RollupQuery{
		MeterID:  q.Meter.ID,
		From:     math.MinInt64,
		To:       math.MaxInt64,
		Subjects: q.Subjects,
	}
	if q.From != nil {
		rq.From = q.From.Unix()
	}
	if q.To != nil {
		rq.To = q.To.Unix()
	}
	return rq
}
