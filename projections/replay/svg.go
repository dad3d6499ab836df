package replay

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"
)

// The SVG is a sequence diagram: one lifeline per lane, one arrow per event
// from the lifeline that spoke to the one that heard (a loop on the
// lifeline for a timer), labelled with the SIP message and the event type;
// the time and node on the left, the resulting state on the right, and
// every detail of the row in a tooltip (<title>). It is SVG 1.1 written
// with encoding/xml, so every text is escaped; sizes are estimated from
// string lengths, which keeps the output deterministic.

// Layout, in SVG user units (pixels).
const (
	svgFontSize = 12
	svgCharW    = 7   // a generous average glyph width at svgFontSize
	svgMargin   = 16  // around everything
	svgTimeW    = 200 // the time column
	svgTop      = 36  // baseline of the lane names
	svgFirstRow = 84  // y of the first arrow
	svgRowH     = 44  // between arrows
	svgMinGap   = 200 // between lifelines
	svgLoopW    = 36  // width of a timer's loop
)

type svgDoc struct {
	XMLName    xml.Name   `xml:"svg"`
	NS         string     `xml:"xmlns,attr"`
	Version    string     `xml:"version,attr"`
	Width      int        `xml:"width,attr"`
	Height     int        `xml:"height,attr"`
	ViewBox    string     `xml:"viewBox,attr"`
	FontFamily string     `xml:"font-family,attr"`
	FontSize   int        `xml:"font-size,attr"`
	Title      string     `xml:"title"`
	Defs       svgDefs    `xml:"defs"`
	Background svgRect    `xml:"rect"`
	Groups     []svgGroup `xml:"g"`
}

type svgDefs struct {
	Markers []svgMarker `xml:"marker"`
}

type svgMarker struct {
	ID      string  `xml:"id,attr"`
	ViewBox string  `xml:"viewBox,attr"`
	RefX    int     `xml:"refX,attr"`
	RefY    int     `xml:"refY,attr"`
	Width   int     `xml:"markerWidth,attr"`
	Height  int     `xml:"markerHeight,attr"`
	Orient  string  `xml:"orient,attr"`
	Path    svgPath `xml:"path"`
}

type svgRect struct {
	Width  string `xml:"width,attr"`
	Height string `xml:"height,attr"`
	Fill   string `xml:"fill,attr"`
}

type svgGroup struct {
	Class string    `xml:"class,attr,omitempty"`
	Title string    `xml:"title,omitempty"`
	Lines []svgLine `xml:"line"`
	Paths []svgPath `xml:"path"`
	Texts []svgText `xml:"text"`
}

type svgLine struct {
	X1     int    `xml:"x1,attr"`
	Y1     int    `xml:"y1,attr"`
	X2     int    `xml:"x2,attr"`
	Y2     int    `xml:"y2,attr"`
	Stroke string `xml:"stroke,attr"`
	Dash   string `xml:"stroke-dasharray,attr,omitempty"`
	Marker string `xml:"marker-end,attr,omitempty"`
}

type svgPath struct {
	D      string `xml:"d,attr"`
	Fill   string `xml:"fill,attr"`
	Stroke string `xml:"stroke,attr,omitempty"`
	Dash   string `xml:"stroke-dasharray,attr,omitempty"`
	Marker string `xml:"marker-end,attr,omitempty"`
}

type svgText struct {
	X      int    `xml:"x,attr"`
	Y      int    `xml:"y,attr"`
	Anchor string `xml:"text-anchor,attr,omitempty"`
	Weight string `xml:"font-weight,attr,omitempty"`
	Size   int    `xml:"font-size,attr,omitempty"`
	Fill   string `xml:"fill,attr,omitempty"`
	Text   string `xml:",chardata"`
}

// arrowLabel names a row's arrow: "INVITE cseq=2 · CallStarted".
func arrowLabel(r Row) string { return r.Cause.short() + " · " + r.Event }

func textW(s string) int { return len([]rune(s)) * svgCharW }

func (l *Ladder) writeSVG(w io.Writer) error {
	if len(l.Lanes) == 0 {
		return fmt.Errorf("replay: %s %s has no lifelines to draw", l.Kind, l.Name)
	}
	lane := map[string]int{}
	for i, name := range l.Lanes {
		lane[name] = i
	}
	// Lifelines far enough apart for the widest label per gap it spans.
	gap := svgMinGap
	for _, r := range l.Rows {
		span := lane[r.To] - lane[r.From]
		if span < 0 {
			span = -span
		}
		need := textW(arrowLabel(r)) + 2*svgMargin
		if span == 0 {
			need += svgLoopW // beside a loop, towards the next lifeline
			span = 1
		}
		if g := need / span; g > gap {
			gap = g
		}
	}
	x0 := svgMargin + svgTimeW + textW(l.Lanes[0])/2 + svgMargin
	laneX := func(name string) int { return x0 + lane[name]*gap }
	// The state column starts right of the last lifeline and of any
	// label beside a timer's loop on it.
	lastX := x0 + (len(l.Lanes)-1)*gap
	stateX := lastX + gap/3
	for _, r := range l.Rows {
		if r.From == r.To && lane[r.From] == len(l.Lanes)-1 {
			stateX = max(stateX, lastX+svgLoopW+6+textW(arrowLabel(r))+svgMargin)
		}
	}
	stateW := textW("state after the event")
	for _, r := range l.Rows {
		stateW = max(stateW, textW(r.State))
	}
	width := stateX + stateW + svgMargin
	height := svgFirstRow + len(l.Rows)*svgRowH

	doc := svgDoc{
		NS: "http://www.w3.org/2000/svg", Version: "1.1", Width: width, Height: height,
		ViewBox: fmt.Sprintf("0 0 %d %d", width, height), FontFamily: "sans-serif", FontSize: svgFontSize,
		Title: fmt.Sprintf("%s %s: %d events", l.Kind, l.Name, len(l.Rows)),
		Defs: svgDefs{Markers: []svgMarker{{ID: "arrow", ViewBox: "0 0 10 10", RefX: 10, RefY: 5, Width: 8, Height: 8,
			Orient: "auto", Path: svgPath{D: "M0,0 L10,5 L0,10 z", Fill: "#222"}}}},
		Background: svgRect{Width: "100%", Height: "100%", Fill: "white"},
	}
	head := svgGroup{Class: "lanes", Texts: []svgText{
		{X: svgMargin, Y: svgTop, Weight: "bold", Text: "time (UTC), node"},
		{X: stateX, Y: svgTop, Weight: "bold", Text: "state after the event"},
	}}
	for _, name := range l.Lanes {
		x := laneX(name)
		head.Texts = append(head.Texts, svgText{X: x, Y: svgTop, Anchor: "middle", Weight: "bold", Text: name})
		head.Lines = append(head.Lines, svgLine{X1: x, Y1: svgTop + 8, X2: x, Y2: height - svgMargin, Stroke: "#999", Dash: "4 4"})
	}
	doc.Groups = append(doc.Groups, head)

	for i, r := range l.Rows {
		y := svgFirstRow + i*svgRowH
		color, dash := "#222", ""
		if r.Skipped {
			color, dash = "#999", "6 3"
		}
		g := svgGroup{Class: "event", Title: rowTitle(r), Texts: []svgText{
			{X: svgMargin, Y: y - 2, Text: r.Time},
			{X: svgMargin, Y: y + 12, Size: svgFontSize - 2, Fill: "#666", Text: fmt.Sprintf("%s · #%d v%d", r.Node, r.Position, r.Version)},
			{X: stateX, Y: y + 4, Fill: color, Text: r.State},
		}}
		from, to := laneX(r.From), laneX(r.To)
		if from == to {
			g.Paths = append(g.Paths, svgPath{D: fmt.Sprintf("M%d,%d h%d v16 h-%d", from, y-8, svgLoopW, svgLoopW),
				Fill: "none", Stroke: color, Dash: dash, Marker: "url(#arrow)"})
			g.Texts = append(g.Texts, svgText{X: from + svgLoopW + 6, Y: y + 4, Fill: color, Text: arrowLabel(r)})
		} else {
			g.Lines = append(g.Lines, svgLine{X1: from, Y1: y, X2: to, Y2: y, Stroke: color, Dash: dash, Marker: "url(#arrow)"})
			g.Texts = append(g.Texts, svgText{X: (from + to) / 2, Y: y - 6, Anchor: "middle", Fill: color, Text: arrowLabel(r)})
		}
		doc.Groups = append(doc.Groups, g)
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", " ")
	if err := enc.Encode(doc); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

// rowTitle is a row's tooltip: everything the text ladder says of it.
func rowTitle(r Row) string {
	return strings.Join([]string{
		fmt.Sprintf("#%d v%d %s on %s", r.Position, r.Version, r.Time, r.Node),
		r.Direction, r.Message, r.Event + ": " + r.Summary, "state: " + r.State,
	}, "\n")
}
