package main

import (
	"fmt"
	"io"
	"net/url"

	"github.com/spf13/cobra"

	"github.com/tandemswitch/tandem/projections/replay"
)

// `tandem state --at T`: which registrations were bound and which calls
// were up at a moment, folded from the events.

func newState() *cobra.Command {
	var tg target
	var at, format, output string
	cmd := &cobra.Command{
		Use:   "state --at <RFC 3339 time>",
		Short: "Reconstruct from the events the registrations bound and the calls up at a moment",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			when, err := replay.ParseTime(at)
			if err != nil {
				return fmt.Errorf("--at: %w", err)
			}
			f, err := replay.ParseStateFormat(format)
			if err != nil {
				return fmt.Errorf("--format: %w", err)
			}
			if err := tg.check(); err != nil {
				return err
			}
			if tg.remote() {
				return tg.fetchTo(cmd, "/api/v1/state", url.Values{"at": {at}, "format": {string(f)}}, output)
			}
			st, err := tg.openStore(false)
			if err != nil {
				return err
			}
			defer st.Close()
			snap, err := replay.StateAt(cmd.Context(), st, when)
			if err != nil {
				return err
			}
			return writeOutput(cmd, output, func(w io.Writer) error { return snap.Render(w, f) })
		},
	}
	tg.addFlags(cmd)
	cmd.Flags().StringVar(&at, "at", "", "the moment, an RFC 3339 time such as 2026-11-22T10:00:00Z (required)")
	cmd.Flags().StringVar(&format, "format", "text", "output format: text or json")
	cmd.Flags().StringVarP(&output, "output", "o", "", "write to this file instead of standard output")
	_ = cmd.MarkFlagRequired("at")
	return cmd
}
