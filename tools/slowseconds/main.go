// Command slowseconds sums up the slow seconds a server logged with
// --slow-seconds: how many, by cause, how slow, and how many of them the
// machine's own floor (tools/floor's CSV, measured beside the server)
// shares: a second in which a do-nothing process also woke a threshold
// late. With -chart it draws the seconds by cause.
//
//	slowseconds -floor floor.csv -skip 10s -chart slow-seconds.png server.log
package main

import (
	"bufio"
	"cmp"
	"encoding/csv"
	"flag"
	"fmt"
	"image/color"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

type slowSecond struct {
	at      time.Time
	cause   string
	slowest time.Duration
}

func main() {
	floorPath := flag.String("floor", "", "tools/floor's per-second CSV of the same run (optional)")
	late := flag.Duration("late", time.Millisecond, "a floor second at least this late counts as the machine's")
	chart := flag.String("chart", "", "write a bar chart of the seconds by cause to this PNG")
	title := flag.String("title", "slow seconds by cause", "the chart's title")
	skip := flag.Duration("skip", 0, "with -floor, leave out the seconds before the floor's first one and this long after it (a warm-up), and those after its last: the floor runs beside the measured load")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: slowseconds [-floor floor.csv] [-chart out.png] server.log...")
		os.Exit(2)
	}
	var secs []slowSecond
	for _, path := range flag.Args() {
		s, err := readLog(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "slowseconds:", err)
			os.Exit(1)
		}
		secs = append(secs, s...)
	}
	var floorLate map[int64]bool
	if *floorPath != "" {
		var first, last int64
		var err error
		if floorLate, first, last, err = readFloor(*floorPath, *late); err != nil {
			fmt.Fprintln(os.Stderr, "slowseconds:", err)
			os.Exit(1)
		}
		from := first + int64(*skip/time.Second)
		secs = slices.DeleteFunc(secs, func(s slowSecond) bool {
			u := s.at.Unix()
			return u < from || u > last+1
		})
	}
	rows := summarize(secs, floorLate)
	printTable(rows, len(secs), floorLate != nil, *late)
	if *chart != "" {
		if err := draw(*chart, *title, rows); err != nil {
			fmt.Fprintln(os.Stderr, "slowseconds:", err)
			os.Exit(1)
		}
	}
}

// readLog takes the "slow second" lines of a slog text log.
func readLog(path string) ([]slowSecond, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []slowSecond
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, `msg="slow second"`) {
			continue
		}
		var s slowSecond
		for _, f := range strings.Fields(line) {
			k, v, ok := strings.Cut(f, "=")
			if !ok {
				continue
			}
			switch k {
			case "time":
				s.at, _ = time.Parse(time.RFC3339Nano, v)
			case "cause":
				s.cause = v
			case "slowest":
				s.slowest, _ = time.ParseDuration(v)
			}
		}
		if s.cause == "" || s.at.IsZero() {
			return nil, fmt.Errorf("%s: a slow second without time or cause: %s", path, line)
		}
		out = append(out, s)
	}
	return out, sc.Err()
}

// readFloor returns the unix seconds in which the floor woke late, and
// the first and last second it measured.
func readFloor(path string, late time.Duration) (lateSecs map[int64]bool, first, last int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, 0, err
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return nil, 0, 0, fmt.Errorf("%s: %w", path, err)
	}
	if len(recs) < 2 {
		return nil, 0, 0, fmt.Errorf("%s: no second measured", path)
	}
	out := map[int64]bool{}
	for _, r := range recs[min(1, len(recs)):] { // a header first
		if len(r) < 3 {
			continue
		}
		sec, err1 := strconv.ParseInt(r[0], 10, 64)
		us, err2 := strconv.ParseFloat(r[2], 64)
		if err1 != nil || err2 != nil {
			return nil, 0, 0, fmt.Errorf("%s: bad row %v", path, r)
		}
		if first == 0 {
			first = sec
		}
		last = sec
		if time.Duration(us*1e3) >= late {
			out[sec] = true
		}
	}
	return out, first, last, nil
}

type row struct {
	cause         string
	seconds       int
	withFloor     int // of seconds, those the floor shares
	median, worst time.Duration
}

func summarize(secs []slowSecond, floorLate map[int64]bool) []row {
	by := map[string][]slowSecond{}
	for _, s := range secs {
		by[s.cause] = append(by[s.cause], s)
	}
	var rows []row
	for cause, ss := range by {
		r := row{cause: cause, seconds: len(ss)}
		d := make([]time.Duration, len(ss))
		for i, s := range ss {
			d[i] = s.slowest
			// The log line closes the window that ended at s.at: the
			// second before, or the one it fell in.
			if u := s.at.Unix(); floorLate[u] || floorLate[u-1] {
				r.withFloor++
			}
		}
		slices.Sort(d)
		r.median, r.worst = d[len(d)/2], d[len(d)-1]
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(a, b row) int { return cmp.Or(b.seconds-a.seconds, strings.Compare(a.cause, b.cause)) })
	return rows
}

func printTable(rows []row, total int, floor bool, late time.Duration) {
	fmt.Printf("%d slow seconds\n\n", total)
	if floor {
		fmt.Printf("| cause | seconds | share | slowest command, median | worst | of them, the floor also %v late |\n| --- | ---: | ---: | ---: | ---: | ---: |\n", late)
	} else {
		fmt.Println("| cause | seconds | share | slowest command, median | worst |\n| --- | ---: | ---: | ---: | ---: |")
	}
	for _, r := range rows {
		fmt.Printf("| %s | %d | %.0f%% | %v | %v |", r.cause, r.seconds, 100*float64(r.seconds)/float64(max(total, 1)),
			r.median.Round(10*time.Microsecond), r.worst.Round(10*time.Microsecond))
		if floor {
			fmt.Printf(" %d |", r.withFloor)
		}
		fmt.Println()
	}
}

func draw(path, title string, rows []row) error {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = "seconds"
	vals := make(plotter.Values, len(rows))
	shared := make(plotter.Values, len(rows))
	names := make([]string, len(rows))
	for i, r := range rows {
		vals[i] = float64(r.seconds - r.withFloor)
		shared[i] = float64(r.withFloor)
		names[i] = r.cause
	}
	w := vg.Points(30)
	own, err := plotter.NewBarChart(vals, w)
	if err != nil {
		return err
	}
	own.Color = color.RGBA{R: 200, G: 60, B: 40, A: 255}
	withFloor, err := plotter.NewBarChart(shared, w)
	if err != nil {
		return err
	}
	withFloor.Color = color.RGBA{R: 120, G: 120, B: 120, A: 255}
	withFloor.StackOn(own)
	p.Add(own, withFloor)
	p.Legend.Add("the floor was not late", own)
	p.Legend.Add("the floor was late too", withFloor)
	p.Legend.Top = true
	p.NominalX(names...)
	return p.Save(max(8*vg.Inch, vg.Length(110+60*len(rows))), 4*vg.Inch, path)
}
