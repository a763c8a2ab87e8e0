// Command rschart draws the per-second latency that rsload records (its
// -out CSV files) as a PNG, one line per run, with the server's GC cycles
// marked: Discord's "latency over time" chart, for scripts/latency.sh.
// With -server it draws the server-side latency (the commands' own run
// time) instead of what the clients saw.
//
//	rschart -o latency.png -title "..." arena=arena.csv pointer-lru=ptr.csv
package main

import (
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"image/color"
	"os"
	"slices"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// run is one CSV file: its per-second rows.
type run struct {
	label   string
	sec     []float64
	p999    []float64 // µs
	max     []float64 // µs
	gcTimes []float64 // seconds in which the server finished a GC cycle
	gcs     int       // GC cycles in the run (several may share a second)
}

func main() {
	out := flag.String("o", "latency.png", "PNG file to write")
	title := flag.String("title", "readstates: latency per second under GC", "chart title")
	skip := flag.Int("skip", 0, "leading seconds to leave out (warm-up)")
	server := flag.Bool("server", false, "draw the server-side latency (the commands' run time, rsload's server_* columns) instead of the client's")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: rschart [-o file.png] [-title t] [-skip s] label=file.csv ...")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	var runs []run
	for _, arg := range flag.Args() {
		label, path, ok := strings.Cut(arg, "=")
		if !ok {
			fmt.Fprintf(os.Stderr, "rschart: %q is not label=file.csv\n", arg)
			os.Exit(2)
		}
		r, err := readRun(label, path, *skip, *server)
		if err != nil {
			fmt.Fprintln(os.Stderr, "rschart:", err)
			os.Exit(1)
		}
		runs = append(runs, r)
	}
	for _, r := range runs {
		fmt.Println(gcSummary(r))
	}
	if err := drawChart(runs, *title, *out); err != nil {
		fmt.Fprintln(os.Stderr, "rschart:", err)
		os.Exit(1)
	}
}

func readRun(label, path string, skip int, server bool) (run, error) {
	p999Col, maxCol := "p999_us", "max_us"
	if server {
		p999Col, maxCol = "server_p999_us", "server_max_us"
	}
	r := run{label: label}
	f, err := os.Open(path)
	if err != nil {
		return r, err
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return r, fmt.Errorf("%s: %w", path, err)
	}
	if len(rows) < 2 {
		return r, fmt.Errorf("%s: no rows", path)
	}
	col := map[string]int{}
	for i, name := range rows[0] {
		col[name] = i
	}
	for _, name := range []string{"second", "requests", p999Col, maxCol, "gc_cycles"} {
		if _, ok := col[name]; !ok {
			return r, fmt.Errorf("%s: no column %q", path, name)
		}
	}
	num := func(row []string, name string) (float64, bool) {
		v, err := strconv.ParseFloat(row[col[name]], 64)
		return v, err == nil
	}
	prevGC := -1.0
	for _, row := range rows[1:] {
		s, _ := num(row, "second")
		if gc, ok := num(row, "gc_cycles"); ok {
			if prevGC >= 0 && gc > prevGC && int(s) > skip {
				r.gcTimes = append(r.gcTimes, s-float64(skip)-0.5) // finished during the previous second
				r.gcs += int(gc - prevGC)
			}
			prevGC = gc
		}
		if n, _ := num(row, "requests"); n == 0 || int(s) < skip {
			continue
		}
		p, ok1 := num(row, p999Col)
		m, ok2 := num(row, maxCol)
		if !ok1 || !ok2 {
			continue // the server reported no latency for this second
		}
		r.sec = append(r.sec, s-float64(skip))
		r.p999 = append(r.p999, p)
		r.max = append(r.max, m)
	}
	if len(r.sec) == 0 {
		return r, fmt.Errorf("%s: no seconds with requests", path)
	}
	return r, nil
}

// gcSummary compares the seconds near a GC cycle's end (that second and
// the one before: the cycle ran then) with the others: a cache the GC must
// trace shows its spikes in the first group only.
func gcSummary(r run) string {
	near := map[int]bool{}
	for _, t := range r.gcTimes {
		s := int(t + 0.5) // gcTimes are second - 0.5
		near[s], near[s-1] = true, true
	}
	var inGC, other []float64
	var maxGC, maxOther float64
	for i, s := range r.sec {
		if near[int(s)] {
			inGC = append(inGC, r.p999[i])
			maxGC = max(maxGC, r.max[i])
		} else {
			other = append(other, r.p999[i])
			maxOther = max(maxOther, r.max[i])
		}
	}
	return fmt.Sprintf("%s: %d GC cycles; %d seconds at a GC cycle: median p99.9 %.0f µs, max %.0f µs; %d other seconds: median p99.9 %.0f µs, max %.0f µs",
		r.label, r.gcs, len(inGC), median(inGC), maxGC, len(other), median(other), maxOther)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

var palette = []color.Color{
	color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, // blue
	color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}, // red
	color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}, // green
	color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff}, // purple
}

// drawChart writes one chart: per run, p99.9 (solid) and max (dashed) per
// second on a log scale, and a tick on the x axis for each GC cycle.
func drawChart(runs []run, title, out string) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "time (s)"
	p.Y.Label.Text = "latency per second (ms, log scale)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	lo, hi := 1e9, 0.0
	for _, r := range runs {
		for j, v := range r.p999 {
			if v > 0 {
				lo = min(lo, v/1e3)
			}
			hi = max(hi, r.max[j]/1e3)
		}
	}
	p.Y.Max = hi * 8 // room for the legend above the lines
	gcY := lo / 2    // GC marks sit under the lowest line
	p.Y.Min = gcY / 2
	for i, r := range runs {
		c := palette[i%len(palette)]
		p999, mx := make(plotter.XYs, len(r.sec)), make(plotter.XYs, len(r.sec))
		for j := range r.sec {
			p999[j] = plotter.XY{X: r.sec[j], Y: max(r.p999[j]/1e3, gcY)}
			mx[j] = plotter.XY{X: r.sec[j], Y: max(r.max[j]/1e3, gcY)}
		}
		l1, err := plotter.NewLine(p999)
		if err != nil {
			return err
		}
		l1.Color, l1.Width = c, vg.Points(1.2)
		l2, err := plotter.NewLine(mx)
		if err != nil {
			return err
		}
		l2.Color, l2.Width, l2.Dashes = c, vg.Points(0.6), []vg.Length{vg.Points(3), vg.Points(2)}
		p.Add(l1, l2)
		p.Legend.Add(r.label+" p99.9", l1)
		p.Legend.Add(r.label+" max", l2)
		if len(r.gcTimes) > 0 {
			marks := make(plotter.XYs, len(r.gcTimes))
			for j, t := range r.gcTimes {
				// Runs share the x axis; stagger their marks vertically.
				marks[j] = plotter.XY{X: t, Y: gcY * (1 + 0.25*float64(i))}
			}
			sc, err := plotter.NewScatter(marks)
			if err != nil {
				return err
			}
			sc.GlyphStyle = draw.GlyphStyle{Color: c, Radius: vg.Points(2.5), Shape: draw.PyramidGlyph{}}
			p.Add(sc)
			p.Legend.Add(fmt.Sprintf("%s: a GC cycle ended (%d cycles)", r.label, r.gcs), sc)
		}
	}
	if len(runs) == 0 {
		return errors.New("nothing to draw")
	}
	return p.Save(12*vg.Inch, 5*vg.Inch, out)
}
