package journal

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/readstates/readstates/cache"
)

func rec(i int) cache.Snapshot {
	return cache.Snapshot{
		Key:   cache.Key{User: int64(i), Channel: int64(i) * 7},
		State: cache.State{MentionCount: int32(i), LastMessageID: int64(i) * 100},
		Stamp: int64(1_000_000 + i),
	}
}

func open(t testing.TB, dir string, opts Options) (*Journal, []cache.Snapshot, Replayed) {
	t.Helper()
	var got []cache.Snapshot
	opts.Dir = dir
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	j, rp, err := Open(opts, func(s cache.Snapshot) { got = append(got, s) })
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return j, got, rp
}

func closeJ(t testing.TB, j *Journal) {
	t.Helper()
	if err := j.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func wantRecords(t *testing.T, got []cache.Snapshot, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("replayed %d records, want %d", len(got), n)
	}
	for i, s := range got {
		if s != rec(i) {
			t.Fatalf("record %d: got %+v, want %+v", i, s, rec(i))
		}
	}
}

func TestReplayInOrder(t *testing.T) {
	dir := t.TempDir()
	j, got, _ := open(t, dir, Options{Policy: Policy{Every: time.Second}})
	if len(got) != 0 {
		t.Fatalf("a new journal replayed %d records", len(got))
	}
	for i := range 1000 {
		j.Append(rec(i))
	}
	closeJ(t, j)
	j, got, rp := open(t, dir, Options{})
	defer closeJ(t, j)
	wantRecords(t, got, 1000)
	if rp.Records != 1000 || rp.Segments != 1 || rp.TornBytes != 0 || rp.Skipped != 0 {
		t.Errorf("replayed %+v", rp)
	}
}

// The journal's goroutine hands records to the kernel within writeEvery,
// without Close or Sync: what a kill -9 leaves on disk.
func TestWrittenWithoutClose(t *testing.T) {
	dir := t.TempDir()
	j, _, _ := open(t, dir, Options{Policy: Policy{Every: time.Hour}})
	defer closeJ(t, j)
	j.Append(rec(0))
	path := filepath.Join(dir, segmentName(1))
	deadline := time.Now().Add(10 * time.Second)
	for {
		fi, err := os.Stat(path)
		if err == nil && fi.Size() == headerLen+recordLen {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("record not written after 10s: %v %v", fi, err)
		}
		time.Sleep(writeEvery)
	}
}

// A journal cut at every byte of its last record (a crash mid-write)
// opens cleanly and loses only that record; so does one whose tail is
// zeros (a file extended, its data not yet on disk).
func TestTornTail(t *testing.T) {
	src := t.TempDir()
	j, _, _ := open(t, src, Options{})
	const n = 5
	for i := range n {
		j.Append(rec(i))
	}
	closeJ(t, j)
	whole, err := os.ReadFile(filepath.Join(src, segmentName(1)))
	if err != nil {
		t.Fatal(err)
	}
	lastAt := headerLen + (n-1)*recordLen
	tails := map[string][]byte{}
	for cut := range recordLen {
		tails["cut at byte "+strconv.Itoa(cut)] = whole[:lastAt+cut]
	}
	tails["zeros"] = append(bytes.Clone(whole[:lastAt]), make([]byte, 3*recordLen)...)
	flipped := bytes.Clone(whole)
	flipped[len(flipped)-1] ^= 1
	tails["last record's checksum fails"] = flipped
	for name, data := range tails {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, segmentName(1)), data, 0o644); err != nil {
				t.Fatal(err)
			}
			j, got, rp := open(t, dir, Options{})
			wantRecords(t, got, n-1)
			if rp.TornBytes != int64(len(data)-lastAt) {
				t.Errorf("torn bytes %d, want %d", rp.TornBytes, len(data)-lastAt)
			}
			// New records go on after the cut, and a second open finds
			// nothing torn.
			j.Append(rec(n - 1))
			closeJ(t, j)
			j, got, rp = open(t, dir, Options{})
			defer closeJ(t, j)
			wantRecords(t, got, n)
			if rp.TornBytes != 0 {
				t.Errorf("second open cut %d bytes", rp.TornBytes)
			}
		})
	}
	t.Run("torn header", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, segmentName(1)), whole, 0o644)
		os.WriteFile(filepath.Join(dir, segmentName(2)), []byte(magic[:3]), 0o644)
		j, got, _ := open(t, dir, Options{})
		defer closeJ(t, j)
		wantRecords(t, got, n)
	})
}

// A bad record followed by good ones, or anywhere in an older segment, is
// corruption: Open names the file and offset and refuses, unless Repair.
func TestCorruptRecord(t *testing.T) {
	src := t.TempDir()
	j, _, _ := open(t, src, Options{})
	for i := range 5 {
		j.Append(rec(i))
	}
	if _, err := j.Rotate(); err != nil {
		t.Fatal(err)
	}
	for i := 5; i < 10; i++ {
		j.Append(rec(i))
	}
	closeJ(t, j)
	for _, c := range []struct {
		name string
		seq  uint64
		off  int
	}{
		{"middle of the newest segment", 2, headerLen + 2*recordLen + 10},
		{"middle of an older segment", 1, headerLen + 1*recordLen + 30},
		{"last record of an older segment", 1, headerLen + 4*recordLen + 5},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, seq := range []uint64{1, 2} {
				b, _ := os.ReadFile(filepath.Join(src, segmentName(seq)))
				if seq == c.seq {
					b[c.off] ^= 0x40
				}
				os.WriteFile(filepath.Join(dir, segmentName(seq)), b, 0o644)
			}
			_, _, err := Open(Options{Dir: dir}, func(cache.Snapshot) {})
			wantOff := (c.off-headerLen)/recordLen*recordLen + headerLen
			if err == nil || !strings.Contains(err.Error(), segmentName(c.seq)) ||
				!strings.Contains(err.Error(), "offset "+strconv.Itoa(wantOff)) || !strings.Contains(err.Error(), "--journal-repair") {
				t.Fatalf("Open: got %v, want an error naming %s, offset %d and --journal-repair", err, segmentName(c.seq), wantOff)
			}
			j, got, rp := open(t, dir, Options{Repair: true})
			defer closeJ(t, j)
			if len(got) != 9 || rp.Skipped != 1 {
				t.Fatalf("repair: replayed %d records, skipped %d; want 9, 1", len(got), rp.Skipped)
			}
		})
	}
}

// Released segments are deleted and never replayed; the active one and
// later ones are.
func TestRotateRelease(t *testing.T) {
	dir := t.TempDir()
	j, _, _ := open(t, dir, Options{})
	for i := range 3 {
		j.Append(rec(i))
	}
	m, err := j.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	if b := j.ClosedBytes(m); b != headerLen+3*recordLen {
		t.Errorf("ClosedBytes: %d, want %d", b, headerLen+3*recordLen)
	}
	j.Append(rec(3))
	if err := j.Release(m); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, segmentName(1))); !os.IsNotExist(err) {
		t.Errorf("released segment still there: %v", err)
	}
	if st := j.Stats(); st.Segments != 1 || st.Appended != 4 {
		t.Errorf("stats %+v", st)
	}
	closeJ(t, j)
	j, got, _ := open(t, dir, Options{})
	defer closeJ(t, j)
	if len(got) != 1 || got[0] != rec(3) {
		t.Fatalf("replayed %+v, want only record 3", got)
	}
}

// Under always, Commit returns once the record is fsynced: on disk
// without waiting for the journal's goroutine.
func TestCommitAlways(t *testing.T) {
	dir := t.TempDir()
	j, _, _ := open(t, dir, Options{Policy: Policy{Always: true}})
	defer closeJ(t, j)
	j.Append(rec(0))
	if err := j.Commit(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, segmentName(1))); err != nil || fi.Size() != headerLen+recordLen {
		t.Fatalf("after Commit: %v %v", fi, err)
	}
	if st := j.Stats(); st.Fsyncs == 0 {
		t.Errorf("no fsync counted: %+v", st)
	}
}

func TestOneProcessPerDirectory(t *testing.T) {
	dir := t.TempDir()
	j, _, _ := open(t, dir, Options{})
	defer closeJ(t, j)
	if _, _, err := Open(Options{Dir: dir}, func(cache.Snapshot) {}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second Open of one directory: got %v, want an error", err)
	}
}

func TestParsePolicy(t *testing.T) {
	for in, want := range map[string]Policy{
		"always": {Always: true}, "no": {}, "everysec": {Every: time.Second},
		"1s": {Every: time.Second}, "250ms": {Every: 250 * time.Millisecond},
	} {
		if got, err := ParsePolicy(in); err != nil || got != want {
			t.Errorf("ParsePolicy(%q): %+v %v, want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1s", "sometimes"} {
		if _, err := ParsePolicy(in); err == nil {
			t.Errorf("ParsePolicy(%q) accepted", in)
		}
	}
}

// Append is on every change's path: once the buffers have grown, it
// allocates nothing.
func TestAppendAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates on its own")
	}
	j, _, _ := open(t, t.TempDir(), Options{Policy: Policy{Every: time.Second}})
	defer closeJ(t, j)
	for i := range 100_000 {
		j.Append(rec(i))
	}
	j.Sync()
	for i := range 100_000 {
		j.Append(rec(i))
	}
	j.Sync()
	if a := testing.AllocsPerRun(10_000, func() { j.Append(rec(1)) }); a != 0 {
		t.Errorf("Append allocates %.2f times", a)
	}
}

func BenchmarkAppend(b *testing.B) {
	j, _, _ := open(b, b.TempDir(), Options{Policy: Policy{Every: time.Second}})
	defer j.Close()
	b.ReportAllocs()
	b.SetBytes(recordLen)
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			j.Append(rec(i))
			i++
		}
	})
}

// Found in review: a segment whose header was torn by a crash was cut to
// 0 bytes and kept; once a newer segment existed it was no longer the
// last, and the next Open refused to start on its empty header.
func TestTornHeaderThenSecondStart(t *testing.T) {
	dir := t.TempDir()
	// Crash right after openSegment created segment 1 (header not written).
	if err := os.WriteFile(filepath.Join(dir, segmentName(1)), []byte(magic[:3]), 0o644); err != nil {
		t.Fatal(err)
	}
	j, _, _ := open(t, dir, Options{}) // cuts seg 1 to 0 bytes, opens seg 2
	j.Append(rec(0))
	closeJ(t, j) // a close (or crash) before the first checkpoint released seg 1
	j2, _, err := Open(Options{Dir: dir}, func(cache.Snapshot) {})
	if err != nil {
		t.Fatalf("second start refused: %v", err)
	}
	j2.Close()
}

// Found in review: after a Rotate that could not create the next segment
// (a directory in its way), Close dropped the records appended since.
func TestCloseAfterFailedRotate(t *testing.T) {
	dir := t.TempDir()
	j, _, _ := open(t, dir, Options{})
	j.Append(rec(0))
	if err := os.Mkdir(filepath.Join(dir, segmentName(2)), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Rotate(); err == nil {
		t.Fatal("rotate should fail")
	}
	j.Append(rec(1))
	// The obstacle goes away (operator frees it / disk space returns).
	os.Remove(filepath.Join(dir, segmentName(2)))
	// Close races the journal's goroutine: stop it from reopening first
	// by closing right away.
	cerr := j.Close()
	j2, got, _ := open(t, dir, Options{})
	defer closeJ(t, j2)
	if len(got) != 2 {
		t.Fatalf("replayed %d records, want 2 (close err %v)", len(got), cerr)
	}
}

// TestAppendWait: an Append that waits for the journal's lock reports the
// wait in the next TakeAppendWait, and only there.
func TestAppendWait(t *testing.T) {
	j, _, _ := open(t, t.TempDir(), Options{})
	defer closeJ(t, j)
	j.Append(rec(0))
	if d := j.TakeAppendWait(); d != 0 {
		t.Fatalf("an Append with the lock free waited %v", d)
	}
	j.mu.Lock()
	done := make(chan struct{})
	go func() { j.Append(rec(1)); close(done) }()
	time.Sleep(20 * time.Millisecond)
	j.mu.Unlock()
	<-done
	if d := j.TakeAppendWait(); d < 10*time.Millisecond {
		t.Fatalf("an Append held up 20ms reported %v", d)
	}
	if d := j.TakeAppendWait(); d != 0 {
		t.Fatalf("a new window reported %v", d)
	}
}
