package sqlite

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tally-metering/tally/internal/billing"
	"github.com/tally-metering/tally/internal/store"
)

// BenchmarkListCustomerPage reads a page of 100 customers from the middle
// of the list (the cursor of customer n/2), live ones and all, among n
// customers: a page should cost the same whatever n.
func BenchmarkListCustomerPage(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("customers=%d", n), func(b *testing.B) {
			ctx := context.Background()
			db, err := Open(ctx, b.TempDir(), Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			at := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
			for i := range n {
				c := billing.Customer{ID: fmt.Sprintf("id-%06d", i), Key: fmt.Sprintf("c-%06d", i), Name: "C", Currency: "EUR",
					Subjects: []string{fmt.Sprintf("s-%06d", i)}, CreatedAt: at, UpdatedAt: at}
				if err := db.CreateCustomer(ctx, c); err != nil {
					b.Fatal(err)
				}
			}
			mid := n / 2
			for _, all := range []bool{false, true} {
				b.Run(fmt.Sprintf("includeDeleted=%v", all), func(b *testing.B) {
					p := store.CustomerPage{IncludeDeleted: all, AfterKey: fmt.Sprintf("c-%06d", mid), AfterID: fmt.Sprintf("id-%06d", mid), Limit: 101}
					for b.Loop() {
						cs, err := db.ListCustomerPage(ctx, p)
						if err != nil || len(cs) != 101 {
							b.Fatalf("%d customers, %v", len(cs), err)
						}
					}
				})
			}
		})
	}
}
