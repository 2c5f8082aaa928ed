package bmcsim

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bmclib "github.com/bmc-toolbox/bmclib/v2"
	"github.com/stretchr/testify/require"
)

// benchClients is how many workers poll power status at once, as a
// metalflow worker pool does.
const benchClients = 8

// BenchmarkPowerStatusLoop measures the bmclib power-status loop (each call
// is GET Systems + GET System, on a fresh TLS connection as bmclib makes
// them) with benchClients workers, first against one BMC, then spread over
// a fleet of 1,000 BMCs in this process. It reports both rates, their
// ratio (1 means the fleet costs nothing per BMC) and the process RSS.
func BenchmarkPowerStatusLoop(b *testing.B) { benchPowerStatusLoop(b, false) }

// BenchmarkPowerStatusLoopHTTP is the same loop without TLS, which shows
// the simulator's own cost once handshakes are out of the way.
func BenchmarkPowerStatusLoopHTTP(b *testing.B) { benchPowerStatusLoop(b, true) }

func benchPowerStatusLoop(b *testing.B, plainHTTP bool) {
	heapBefore := heapMB()
	single := startFleet(b, Config{Count: 1, Vendor: VendorGeneric, Username: "admin", Password: "secret", InsecureHTTP: plainHTTP})
	fleet := startFleet(b, Config{Count: 1000, Vendor: VendorMixed, Username: "admin", Password: "secret", InsecureHTTP: plainHTTP})
	heapFleet := heapMB() - heapBefore

	singleClients := make([]*bmclib.Client, benchClients)
	for i := range singleClients {
		singleClients[i] = connect(b, single.BMCs()[0])
	}
	fleetClients := make([]*bmclib.Client, len(fleet.BMCs()))
	var wg sync.WaitGroup
	sem := make(chan struct{}, benchClients)
	for i, bm := range fleet.BMCs() {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			cl, err := open(bm, "admin", "secret")
			require.NoError(b, err)
			fleetClients[i] = cl
		}()
	}
	wg.Wait()
	b.Cleanup(func() {
		for _, cl := range fleetClients {
			_ = cl.Close(context.Background())
		}
	})

	b.ResetTimer()
	singleRate := powerLoop(b, b.N, func(worker, i int) *bmclib.Client { return singleClients[worker] }, single)
	fleetRate := powerLoop(b, b.N, func(worker, i int) *bmclib.Client { return fleetClients[i%len(fleetClients)] }, fleet)
	b.StopTimer()

	b.ReportMetric(singleRate, "req/s-1bmc")
	b.ReportMetric(fleetRate, "req/s-1000bmc")
	b.ReportMetric(fleetRate/singleRate, "fleet/single")
	b.ReportMetric(heapFleet, "MB-heap-1000bmc")
	b.ReportMetric(rssMB(b), "MB-RSS")
}

// powerLoop runs n power-status calls on benchClients workers and returns
// the HTTP requests per second the BMCs served.
func powerLoop(b *testing.B, n int, client func(worker, i int) *bmclib.Client, f *Fleet) float64 {
	before := totalRequests(f)
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < benchClients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if _, err := client(w, i).GetPowerState(ctx); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return float64(totalRequests(f)-before) / time.Since(start).Seconds()
}

func totalRequests(f *Fleet) int {
	n := 0
	for _, b := range f.BMCs() {
		n += b.Counters().Requests
	}
	return n
}

// heapMB is the live heap after a collection: what the fleet itself holds,
// unlike RSS, which keeps what earlier rounds of the benchmark freed.
func heapMB() float64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(ms.HeapInuse+ms.StackInuse) / (1 << 20)
}

func rssMB(b *testing.B) float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Skip("no /proc: RSS unavailable")
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}
