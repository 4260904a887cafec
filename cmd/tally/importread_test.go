package main

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestImportLinesResume: reading from a recorded end offset gives the same
// lines, with the same numbers, as reading the whole file, in both formats
// (CSV records may span lines); blank lines are skipped, an overlong line
// is reported and passed.
func TestImportLinesResume(t *testing.T) {
	long := `{"kind":"event","x":"` + strings.Repeat("a", maxImportLine) + `"}`
	for _, tc := range []struct {
		name, file, content string
	}{
		{"ndjson", "x.ndjson", `{"kind":"customer"}` + "\n\n" + `{"kind":"event"}` + "\r\n" + long + "\n" + `{"specversion":"1.0"}` + "\n" + `{"kind":"subscription"}`},
		{"csv", "x.csv", "key,name,currency\r\na,\"A\nwith a line break\",EUR\n\nb,B,EUR\nc,\"C\",USD\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, err := openImportFile(writeFile(t, tc.file, tc.content))
			if err != nil {
				t.Fatal(err)
			}
			type got struct {
				No   int
				Kind importKind
				Err  string
			}
			read := func(from int64, fromLine int) ([]got, []importLine) {
				var out []got
				var lines []importLine
				err := in.lines(from, fromLine, func(l importLine) (bool, error) {
					g := got{No: l.no, Kind: l.kind}
					if l.err != nil {
						g.Err = l.err.Error()
					}
					out = append(out, g)
					lines = append(lines, l)
					return true, nil
				})
				if err != nil {
					t.Fatal(err)
				}
				return out, lines
			}
			all, lines := read(0, 0)
			if tc.name == "ndjson" {
				want := []got{{1, kindCustomer, ""}, {3, kindEvent, ""}, {4, "", "line longer than 2097152 bytes"}, {5, kindEvent, ""}, {6, kindSubscription, ""}}
				if diff := cmp.Diff(want, all); diff != "" {
					t.Errorf("lines (-want +got):\n%s", diff)
				}
			} else {
				want := []got{{2, kindCustomer, ""}, {5, kindCustomer, ""}, {6, kindCustomer, ""}}
				if diff := cmp.Diff(want, all); diff != "" {
					t.Errorf("records (-want +got):\n%s", diff)
				}
				if lines[0].fields["name"] != "A\nwith a line break" || lines[2].fields["currency"] != "USD" {
					t.Errorf("fields: %v, %v", lines[0].fields, lines[2].fields)
				}
			}
			for i := range lines {
				rest, _ := read(lines[i].end, lines[i].last)
				if diff := cmp.Diff(all[i+1:], rest, cmp.Comparer(func(a, b []got) bool { return len(a) == 0 && len(b) == 0 || cmp.Equal(a, b) })); diff != "" {
					t.Errorf("resumed after line %d (-want +got):\n%s", lines[i].no, diff)
				}
			}
		})
	}
}

// TestImportEventLines: an NDJSON event is sent without its kind member,
// its other members as written; a CSV event is built with typed data.
func TestImportEventLines(t *testing.T) {
	ev := importLine{text: []byte(`{"id":"e1","kind":"event","specversion":"1.0","source":"s","type":"t","subject":"a b","time":"2026-06-20T10:00:00+02:00","data":{"n":1.50}}`)}
	raw, err := ev.event(timeOf("2026-07-01T00:00:00Z"))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"id":"e1","specversion":"1.0","source":"s","type":"t","subject":"a b","time":"2026-06-20T10:00:00+02:00","data":{"n":1.50}}`; string(raw) != want {
		t.Errorf("NDJSON event sent as\n%s\nwant\n%s", raw, want)
	}
	row := importLine{fields: map[string]string{"id": "e2", "source": "s", "type": "t", "subject": "a", "time": "2026-06-20T10:00:00Z",
		"data.count": "12", "data.ok": "true", "data.code": "007x", "data.neg": "-1e3"}}
	raw, err = row.event(timeOf("2026-07-01T00:00:00Z"))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"data":{"code":"007x","count":12,"neg":-1e3,"ok":true},"id":"e2","source":"s","specversion":"1.0","subject":"a","time":"2026-06-20T10:00:00Z","type":"t"}`; string(raw) != want {
		t.Errorf("CSV event sent as\n%s\nwant\n%s", raw, want)
	}
	for _, bad := range []string{`{"kind":"event","specversion":"1.0","id":"x","source":"s","type":"t","subject":"a","time":"2026-06-20T10:00:00Z","data":"str"}`, `[1]`} {
		if _, err := (importLine{text: []byte(bad)}).event(timeOf("2026-07-01T00:00:00Z")); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func TestCSVKind(t *testing.T) {
	for _, tc := range []struct {
		header string
		want   importKind
		err    string
	}{
		{"key,name,currency", kindCustomer, ""},
		{"customer,plan,start", kindSubscription, ""},
		{"id,source,type,subject,time,data.count", kindEvent, ""},
		{"key,name,currency,nmae", "", `column "nmae" is not a column of a customer file`},
		{"key,key,currency", "", "named twice"},
		{"foo,bar", "", "can't tell"},
	} {
		k, err := csvKind(strings.Split(tc.header, ","))
		if k != tc.want || (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("csvKind(%s) = %q, %v; want %q, %q", tc.header, k, err, tc.want, tc.err)
		}
	}
}

func timeOf(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}
