package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tally-metering/tally/internal/report"
)

// runReports lists usage reports of a running tally server, or shows one
// report with its delivery history (--id), through the API.
func runReports(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("reports", flag.ContinueOnError)
	fs.SetOutput(stderr)
	setHelp(fs, helpText{
		usage: "tally reports [--url URL] [--token T] [flags]",
		about: `Lists the usage reports of a running tally server (GET /api/v1/reports),
or shows one with every delivery attempt (--id). Needs an admin token or a
read API key: --token, or the environment variable TALLY_TOKEN (or
TALLY_ADMIN_TOKEN).`,
		examples: []string{
			"TALLY_TOKEN=$ADMIN tally reports --state failed",
			"tally reports --url https://tally.example.com --token $KEY --customer contoso --from 2026-07-01T00:00:00Z",
			"tally reports --token $KEY --id rpt_0123456789abcdef",
		},
	})
	server := fs.String("url", "http://127.0.0.1:8080", "the tally server (env TALLY_URL)")
	token := fs.String("token", "", "an admin token or a read API key (env TALLY_TOKEN)")
	customer := fs.String("customer", "", "only this customer's reports (id or key)")
	subscription := fs.String("subscription", "", "only this subscription's reports")
	target := fs.String("target", "", "only reports to this target")
	state := fs.String("state", "", "only reports in this state (pending, sending, accepted, duplicate, expired, failed)")
	from := fs.String("from", "", "only hours starting at or after this RFC 3339 time")
	to := fs.String("to", "", "only hours starting before this RFC 3339 time")
	limit := fs.Int("limit", 100, "at most this many reports")
	id := fs.String("id", "", "show this report and its delivery attempts")
	asJSON := fs.Bool("json", false, "print the API's JSON")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if err := applyEnv(fs); err != nil {
		return fmt.Errorf("reports: %w", err)
	}
	if *token == "" {
		*token = os.Getenv("TALLY_ADMIN_TOKEN")
	}
	base := strings.TrimRight(*server, "/") + "/api/v1/reports"
	if *id != "" {
		body, err := apiGet(ctx, base+"/"+url.PathEscape(*id), *token)
		if err != nil {
			return fmt.Errorf("reports: %w", err)
		}
		if *asJSON {
			_, err := stdout.Write(body)
			return err
		}
		var d struct {
			report.Report
			AttemptLog []report.Attempt `json:"attemptLog"`
		}
		if err := json.Unmarshal(body, &d); err != nil {
			return fmt.Errorf("reports: decode answer: %w", err)
		}
		printReports(stdout, []report.Report{d.Report})
		fmt.Fprintln(stdout)
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ATTEMPT\tAT\tOUTCOME\tCODE\tMESSAGE")
		for _, a := range d.AttemptLog {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", a.Attempt, a.At.Format(time.RFC3339), a.Outcome, a.Code, a.Message)
		}
		return tw.Flush()
	}
	q := url.Values{}
	for k, v := range map[string]string{"customer": *customer, "subscription": *subscription, "target": *target, "state": *state, "from": *from, "to": *to} {
		if v != "" {
			q.Set(k, v)
		}
	}
	var all []report.Report
	for len(all) < *limit {
		q.Set("limit", fmt.Sprint(min(*limit-len(all), 1000)))
		body, err := apiGet(ctx, base+"?"+q.Encode(), *token)
		if err != nil {
			return fmt.Errorf("reports: %w", err)
		}
		var page struct {
			Items     []report.Report `json:"items"`
			NextAfter string          `json:"nextAfter"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			return fmt.Errorf("reports: decode answer: %w", err)
		}
		all = append(all, page.Items...)
		if page.NextAfter == "" {
			break
		}
		q.Set("after", page.NextAfter)
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(map[string]any{"items": all})
	}
	printReports(stdout, all)
	return nil
}

func printReports(w io.Writer, reps []report.Report) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOUR\tTARGET\tCUSTOMER\tDIMENSION\tQUANTITY\tSTATE\tATTEMPTS\tID\tLAST ERROR")
	for _, r := range reps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", r.Hour.UTC().Format(time.RFC3339), r.Target, r.Resource.CustomerKey,
			r.Dimension, r.Quantity, r.State, r.Attempts, r.ID, r.LastError)
	}
	tw.Flush()
}

// apiGet GETs u with the bearer token and returns the body of a 200, or an
// error carrying the problem's detail.
// credentialHint tells a user whose request was refused (401) how to pass a
// credential: the server's answer alone does not say which flag to set.
// what names the credential the command needs.
func credentialHint(token, what string) string {
	if token == "" {
		return "no credential was given: pass --token with " + what + ", or set the environment variable TALLY_TOKEN"
	}
	return "the server refused the credential of --token (or TALLY_TOKEN): check it is " + what + " of this server, not revoked or expired"
}

func apiGet(ctx context.Context, u, token string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var p struct{ Detail string }
		_ = json.Unmarshal(body, &p)
		if p.Detail == "" {
			p.Detail = strings.TrimSpace(string(body))
		}
		err := fmt.Errorf("%s: %s", resp.Status, p.Detail)
		if resp.StatusCode == http.StatusUnauthorized {
			err = fmt.Errorf("%w\n%s", err, credentialHint(token, "an admin token or a read API key"))
		}
		return nil, err
	}
	return body, nil
}
