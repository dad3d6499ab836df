package replay

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Format is an output format.
type Format string

// Formats.
const (
	Text Format = "text" // aligned columns for a terminal
	JSON Format = "json" // a stable array (or object) with snake_case keys
	SVG  Format = "svg"  // a sequence diagram (ladders only)
)

// ParseLadderFormat parses a ladder's format: text, json or svg ("" is
// text).
func ParseLadderFormat(s string) (Format, error) { return parseFormat(s, Text, JSON, SVG) }

// ParseStateFormat parses a point-in-time state's format: text or json
// ("" is text).
func ParseStateFormat(s string) (Format, error) { return parseFormat(s, Text, JSON) }

func parseFormat(s string, allowed ...Format) (Format, error) {
	if s == "" {
		return Text, nil
	}
	names := make([]string, len(allowed))
	for i, f := range allowed {
		if string(f) == s {
			return f, nil
		}
		names[i] = string(f)
	}
	last := len(names) - 1
	return "", badInput("%q is not a format: want %s or %s", s, strings.Join(names[:last], ", "), names[last])
}

// ContentType is the HTTP Content-Type of a format.
func (f Format) ContentType() string {
	switch f {
	case JSON:
		return "application/json"
	case SVG:
		return "image/svg+xml"
	}
	return "text/plain; charset=utf-8"
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // "caller -> tandem", not "-\u003e"
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table writes a header and rows as aligned columns.
func table(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range append([][]string{header}, rows...) {
		if _, err := fmt.Fprintln(tw, strings.Join(r, "\t")); err != nil {
			return err
		}
	}
	return tw.Flush()
}

// Render writes the ladder in format f.
func (l *Ladder) Render(w io.Writer, f Format) error {
	switch f {
	case JSON:
		rows := l.Rows
		if rows == nil {
			rows = []Row{}
		}
		return writeJSON(w, rows)
	case SVG:
		return l.writeSVG(w)
	case Text, "":
		return l.writeText(w)
	}
	return badInput("%q is not a format: want text, json or svg", f)
}

func (l *Ladder) writeText(w io.Writer) error {
	if _, err := fmt.Fprintf(w, "%s %s (stream %s, %d events)\n\n", l.Kind, l.Name, l.Stream, len(l.Rows)); err != nil {
		return err
	}
	rows := make([][]string, 0, len(l.Rows))
	for _, r := range l.Rows {
		rows = append(rows, []string{fmt.Sprint(r.Position), fmt.Sprint(r.Version), r.Time, r.Node,
			r.Direction, r.Message, r.Event, r.Summary, r.State})
	}
	return table(w, []string{"POS", "VER", "TIME", "NODE", "DIRECTION", "SIP MESSAGE", "EVENT", "SUMMARY", "STATE"}, rows)
}
