package peers

import (
	"os"
	"testing"
)

func TestParseStat(t *testing.T) {
	// A command name with spaces and parentheses, as proc(5) allows.
	line := "4242 (a) b (c) S 7 4242 4242 0 -1 4194560 100 0 0 0 250 50 3 4 20 0 1 0 100 0 0\n"
	f, err := parseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if f[statPPID] != 7 || f[statUtime] != 250 || f[statStime] != 50 || f[statCutime] != 3 || f[statCstime] != 4 {
		t.Errorf("ppid, utime, stime, cutime, cstime = %d %d %d %d %d, want 7 250 50 3 4",
			f[statPPID], f[statUtime], f[statStime], f[statCutime], f[statCstime])
	}
	if _, err := parseStat([]byte("4242 (short) S 1 2")); err == nil {
		t.Error("short line: got no error, want one")
	}
}

func TestCPUSecondsOfPID(t *testing.T) {
	viaProc, err := CPUSeconds(os.Getpid())
	if err != nil || viaProc < 0 {
		t.Errorf("CPUSeconds(own pid) = %v, %v; want ≥ 0, nil", viaProc, err)
	}
	if _, err := CPUSeconds(1 << 30); err == nil {
		t.Error("CPUSeconds(no such pid): got no error, want one")
	}
}
