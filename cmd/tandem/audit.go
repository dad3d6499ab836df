package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/spf13/cobra"

	"github.com/tandemswitch/tandem/events/embedded"
)

// newAudit is `tandem audit`: the auditor's commands on the event log.
func newAudit() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Check the event log's tamper evidence",
	}
	cmd.AddCommand(newAuditVerify())
	return cmd
}

// newAuditVerify is `tandem audit verify`: walk the whole log and check
// its hash chain. It exits 0 only when the chain is intact; when it finds
// tampering it prints the report and exits 1.
func newAuditVerify() *cobra.Command {
	var t target
	var format string
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Walk the whole event log; report the first event altered, missing or out of order",
		Long: `Walk the whole event log and check every event against the hash chain:
each event's envelope holds the hash of the event before it, and the store
keeps the position and hash of the newest one. Prints the events checked,
the head position and head hash, and either "chain intact" or the first
problem with its position and kind (altered, missing, order).

Keep the head hash somewhere else: someone who rewrites the whole log from
some event on is only caught by comparing it with a head hash recorded before.

Exit status 0 only when the chain is intact, 1 otherwise.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := t.check(); err != nil {
				return err
			}
			if format != "text" && format != "json" {
				return fmt.Errorf("--format %q: want text or json", format)
			}
			rep, err := auditVerify(cmd.Context(), &t)
			if err != nil {
				return err
			}
			if err := printAuditReport(cmd.OutOrStdout(), rep, format); err != nil {
				return err
			}
			if p := rep.FirstProblem; p != nil {
				return fmt.Errorf("the event log is not intact: %s, %s", where(p), p.Kind)
			}
			return nil
		},
	}
	t.addFlags(cmd)
	cmd.Flags().StringVar(&format, "format", "text", "output: text or json")
	return cmd
}

// auditVerify gets the report from the running node or the local store.
func auditVerify(ctx context.Context, t *target) (*embedded.AuditReport, error) {
	if t.remote() {
		var rep embedded.AuditReport
		if err := t.call(ctx, http.MethodGet, "/api/v1/audit/verify", nil, nil, &rep); err != nil {
			return nil, err
		}
		if rep.Intact == (rep.FirstProblem != nil) {
			return nil, fmt.Errorf("--server %s: the answer is not an audit report (intact %v, first problem %v)",
				t.server, rep.Intact, rep.FirstProblem)
		}
		return &rep, nil
	}
	st, err := t.openStore(false)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	return st.Verify(ctx)
}

// printAuditReport writes the report as text for a person, or as the
// API's JSON.
func printAuditReport(w io.Writer, rep *embedded.AuditReport, format string) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	var err error
	printf := func(f string, args ...any) {
		if err == nil {
			_, err = fmt.Fprintf(w, f, args...)
		}
	}
	printf("events checked: %d\n", rep.EventsChecked)
	printf("head: position %d, hash %s\n", rep.HeadPosition, rep.HeadHash)
	if p := rep.FirstProblem; p != nil {
		printf("NOT INTACT: first problem at %s: %s\n  %s\n", where(p), p.Kind, p.Message)
	} else {
		printf("chain intact (keep the head hash to compare with later audits)\n")
	}
	return err
}

// where names the place of a problem: its position, or the stream index
// for a problem that names no event.
func where(p *embedded.Problem) string {
	if p.Position == 0 {
		return "the stream index"
	}
	return fmt.Sprintf("position %d", p.Position)
}
