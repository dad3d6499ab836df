package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"

	"github.com/spf13/cobra"

	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/projections/replay"
)

// `tandem replay call|registration`: a stream's events as a ladder, from a
// data directory or a running node (projections/replay renders both).

func newReplay() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "replay",
		Short: "Replay a call's or a registration's events as a ladder (text, json or svg)",
	}
	cmd.AddCommand(
		newReplayStream("call <id>", "Replay a call: every event with its time, node, direction, SIP message and resulting state",
			replay.CheckCallID, replay.ReadCall, "/api/v1/replay/calls/"),
		newReplayStream("registration <aor>", "Replay the registration of an address of record (sip:user@domain)",
			replay.CheckAOR, replay.ReadRegistration, "/api/v1/replay/registrations/"),
	)
	return cmd
}

// newReplayStream is one of replay's subcommands: check validates the
// argument, read replays it from a store, apiPath is where a node serves
// the same rendering.
func newReplayStream(use, short string, check func(string) error,
	read func(context.Context, events.Store, string) (*replay.Ladder, error), apiPath string) *cobra.Command {
	var tg target
	var format, output string
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			f, err := replay.ParseLadderFormat(format)
			if err != nil {
				return fmt.Errorf("--format: %w", err)
			}
			if err := check(name); err != nil {
				return err
			}
			if err := tg.check(); err != nil {
				return err
			}
			if tg.remote() {
				return tg.fetchTo(cmd, apiPath+url.PathEscape(name), url.Values{"format": {string(f)}}, output)
			}
			st, err := tg.openStore(false)
			if err != nil {
				return err
			}
			defer st.Close()
			l, err := read(cmd.Context(), st, name)
			if err != nil {
				return err
			}
			return writeOutput(cmd, output, func(w io.Writer) error { return l.Render(w, f) })
		},
	}
	tg.addFlags(cmd)
	cmd.Flags().StringVar(&format, "format", "text", "output format: text, json or svg (a sequence diagram)")
	cmd.Flags().StringVarP(&output, "output", "o", "", "write to this file instead of standard output")
	return cmd
}

// fetchTo streams the answer of a GET on the node's API to the output.
func (t *target) fetchTo(cmd *cobra.Command, path string, query url.Values, output string) error {
	body, err := t.open(cmd.Context(), "GET", path, query, nil)
	if err != nil {
		return err
	}
	defer body.Close()
	return writeOutput(cmd, output, func(w io.Writer) error {
		_, err := io.Copy(w, body)
		return err
	})
}

// writeOutput runs write on the command's standard output, or on the file
// output; a file is removed again when write fails, so that no half
// document is left behind.
func writeOutput(cmd *cobra.Command, output string, write func(io.Writer) error) error {
	if output == "" {
		return write(cmd.OutOrStdout())
	}
	f, err := os.Create(output)
	if err != nil {
		return fmt.Errorf("--output: %w", err)
	}
	err = write(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return errors.Join(err, os.Remove(output))
	}
	return nil
}
