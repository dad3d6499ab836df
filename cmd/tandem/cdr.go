package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"

	"github.com/spf13/cobra"

	"github.com/tandemswitch/tandem/internal/config"
	"github.com/tandemswitch/tandem/internal/node"
	"github.com/tandemswitch/tandem/projections"
	"github.com/tandemswitch/tandem/projections/cdr"
)

func newCDR() *cobra.Command {
	cmd := &cobra.Command{Use: "cdr", Short: "Call detail records (the CDR projection)"}
	cmd.AddCommand(newCDRExport())
	return cmd
}

func newCDRExport() *cobra.Command {
	var t target
	var from, to, format, output string
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Write the CDRs of calls that started in [--from, --to) as CSV or JSON",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := t.check(); err != nil {
				return err
			}
			if format != "csv" && format != "json" {
				return fmt.Errorf("--format %q: want csv or json", format)
			}
			f, err := cdr.ParseBound(from)
			if err != nil {
				return fmt.Errorf("--from: %w", err)
			}
			tt, err := cdr.ParseBound(to)
			if err != nil {
				return fmt.Errorf("--to: %w", err)
			}
			if !f.IsZero() && !tt.IsZero() && !f.Before(tt) {
				return fmt.Errorf("--from %s is not before --to %s", from, to)
			}
			return withOutput(cmd, output, func(w io.Writer) error {
				ctx := cmd.Context()
				if t.remote() {
					q := url.Values{"format": {format}}
					if from != "" {
						q.Set("from", from)
					}
					if to != "" {
						q.Set("to", to)
					}
					body, err := t.open(ctx, "GET", "/api/v1/cdrs", q, nil)
					if err != nil {
						return err
					}
					defer body.Close()
					_, err = io.Copy(w, body)
					return err
				}
				sink, err := t.openCDRSink(ctx)
				if err != nil {
					return err
				}
				defer sink.Close()
				list, err := sink.Export(ctx, f, tt)
				if err != nil {
					return err
				}
				return cdr.Write(w, format, list)
			})
		},
	}
	t.addFlags(cmd)
	cmd.Flags().StringVar(&from, "from", "", "first call start time included (RFC 3339 or YYYY-MM-DD, UTC); default: the first")
	cmd.Flags().StringVar(&to, "to", "", "call start time excluded from here on (RFC 3339 or YYYY-MM-DD); default: none")
	cmd.Flags().StringVar(&format, "format", "csv", "csv or json")
	cmd.Flags().StringVarP(&output, "output", "o", "", "write to this file instead of standard output")
	return cmd
}

// openCDRSink opens the local CDR database named by the configuration.
func (t *target) openCDRSink(ctx context.Context) (*cdr.Sink, error) {
	_, cfg, err := t.local()
	if err != nil {
		return nil, err
	}
	if cfg.CDR.Sink == "sqlite" {
		if _, err := os.Stat(cfg.CDRSQLitePath()); err != nil {
			return nil, fmt.Errorf("no CDR database at %s (has a node run on this data directory?): %w", cfg.CDRSQLitePath(), err)
		}
	}
	return node.OpenCDRSink(ctx, cfg)
}

// withOutput runs write on standard output or, with a file name, on that
// file (created, and removed again when write fails).
func withOutput(cmd *cobra.Command, path string, write func(io.Writer) error) error {
	if path == "" {
		return write(cmd.OutOrStdout())
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--output: %w", err)
	}
	if err := write(f); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}

func newProjections() *cobra.Command {
	cmd := &cobra.Command{Use: "projections", Short: "Durable projections: status and rebuild"}
	cmd.AddCommand(newProjectionsStatus(), newProjectionsRebuild())
	return cmd
}

// localRunner builds the runner of the named projection over a local data
// directory (the store opened read-only: a rebuild writes only the
// projection's own database).
// Only a rebuild may create the projection's database (create).
func (t *target) localRunner(ctx context.Context, name string, create bool) (*projections.Runner, func(), error) {
	if name != cdr.Name {
		return nil, nil, fmt.Errorf("no projection %q (known: %s)", name, cdr.Name)
	}
	st, err := t.openStore(false)
	if err != nil {
		return nil, nil, err
	}
	var sink *cdr.Sink
	if create {
		var cfg *config.Config
		if _, cfg, err = t.local(); err == nil {
			sink, err = node.OpenCDRSink(ctx, cfg)
		}
	} else {
		sink, err = t.openCDRSink(ctx)
	}
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return &projections.Runner{Store: st, P: cdr.New(sink)}, func() { sink.Close(); st.Close() }, nil
}

func printStatus(w io.Writer, list []projections.Status) {
	fmt.Fprintf(w, "%-12s %12s %12s %10s %8s\n", "PROJECTION", "CHECKPOINT", "HEAD", "LAG", "SKIPPED")
	for _, s := range list {
		fmt.Fprintf(w, "%-12s %12d %12d %10d %8d\n", s.Name, s.Checkpoint, s.Head, s.Lag, s.Skipped)
	}
}

func newProjectionsStatus() *cobra.Command {
	var t target
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show each projection's checkpoint and how far it lags the event store",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := t.check(); err != nil {
				return err
			}
			ctx := cmd.Context()
			var list []projections.Status
			if t.remote() {
				if err := t.call(ctx, "GET", "/api/v1/projections", nil, nil, &list); err != nil {
					return err
				}
			} else {
				r, closeAll, err := t.localRunner(ctx, cdr.Name, false)
				if err != nil {
					return err
				}
				defer closeAll()
				cp, err := r.P.Load(ctx)
				if err != nil {
					return err
				}
				head := r.Store.Head()
				list = append(list, projections.Status{Name: cdr.Name, Checkpoint: cp, Head: head, Lag: max(head, cp) - cp})
			}
			printStatus(cmd.OutOrStdout(), list)
			return nil
		},
	}
	t.addFlags(cmd)
	return cmd
}

func newProjectionsRebuild() *cobra.Command {
	var t target
	cmd := &cobra.Command{
		Use:   "rebuild NAME",
		Short: "Delete a projection's output and rebuild it from the first event",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := t.check(); err != nil {
				return err
			}
			ctx := cmd.Context()
			var st projections.Status
			if t.remote() {
				if err := t.call(ctx, "POST", "/api/v1/projections/"+url.PathEscape(args[0])+"/rebuild", nil, nil, &st); err != nil {
					return err
				}
			} else {
				r, closeAll, err := t.localRunner(ctx, args[0], true)
				if err != nil {
					return err
				}
				defer closeAll()
				if _, err := r.Rebuild(ctx); err != nil {
					return err
				}
				st = r.Status()
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rebuilt %s: checkpoint %d of %d events, %d of unknown types skipped\n", st.Name, st.Checkpoint, st.Head, st.Skipped)
			return nil
		},
	}
	t.addFlags(cmd)
	return cmd
}
