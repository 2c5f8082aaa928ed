package bench

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// percentile is the nearest-rank percentile p (0..100) of samples; 0 when
// there are none. samples need not be sorted.
func percentile(samples []time.Duration, p float64) time.Duration {
	if len(samples) == 0 {
		return 0
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	rank := int(float64(len(s))*p/100+0.999999) - 1
	return s[max(0, min(rank, len(s)-1))]
}

// cpuTime is the CPU time (user + system) this process has used so far,
// every goroutine of it: the embedded Temporal server, the API, the worker
// and the simulated fleet alike.
func cpuTime() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// memoryFigures are a process's resident set now and at its peak.
type memoryFigures struct {
	RSSBytes     int64 // VmRSS
	PeakRSSBytes int64 // VmHWM
}

// readMemory reads /proc/<pid>/status; pid 0 is this process.
func readMemory(pid int) (memoryFigures, error) {
	path := "/proc/self/status"
	if pid != 0 {
		path = "/proc/" + strconv.Itoa(pid) + "/status"
	}
	f, err := os.Open(path)
	if err != nil {
		return memoryFigures{}, err
	}
	defer f.Close()
	var m memoryFigures
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var into *int64
		switch key {
		case "VmRSS":
			into = &m.RSSBytes
		case "VmHWM":
			into = &m.PeakRSSBytes
		default:
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return memoryFigures{}, fmt.Errorf("%s %s: %w", path, key, err)
		}
		*into = kb << 10
	}
	if err := sc.Err(); err != nil {
		return memoryFigures{}, err
	}
	if m.PeakRSSBytes == 0 {
		return memoryFigures{}, fmt.Errorf("%s: no VmHWM line", path)
	}
	return m, nil
}

// heapInUse is the Go heap in use after a collection, so that garbage not
// yet collected does not count.
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// latencies collects request durations and failures of one kind of call.
type latencies struct {
	samples []time.Duration
	errors  int
}

func (l *latencies) add(d time.Duration, err error) {
	if err != nil {
		l.errors++
		return
	}
	l.samples = append(l.samples, d)
}

func (l *latencies) merge(o latencies) {
	l.samples = append(l.samples, o.samples...)
	l.errors += o.errors
}

func seconds(d time.Duration) float64 { return d.Seconds() }

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
