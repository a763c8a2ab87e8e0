package tests

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// Measuring helpers of the fault and load tests, whose figures are logged
// as lines starting with "FIGURE:" (to be copied into RELIABILITY.md).

// procRSS is the resident set size of process pid in bytes, from
// /proc/<pid>/status (VmRSS); false where there is no /proc or no process.
func procRSS(pid int) (int64, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, false
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest) // "12345", "kB"
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, false
		}
		kb, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			return 0, false
		}
		return kb << 10, true
	}
	return 0, false
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// figureName is the test's name for FIGURE lines.
func figureName(t *testing.T) string {
	return strings.TrimPrefix(t.Name(), "Test")
}
