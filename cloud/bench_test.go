package cloud

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
)

// BenchmarkRegisterCycle measures what the lifecycle pays per server in
// Ironic: enroll with two ports, manage, provide to available, then delete
// (decommission), against the package's real Ironic with fake-hardware.
// It reports nodes/s; nothing here asserts on time.
func BenchmarkRegisterCycle(b *testing.B) {
	c := newIronic(b)
	ctx := context.Background()
	for i := 0; b.Loop(); i++ {
		spec := fakeSpec(fmt.Sprintf("BENCH-seq-%d", i))
		if _, err := c.Register(ctx, spec); err != nil {
			b.Fatal(err)
		}
		if err := c.DeleteNode(ctx, spec.Serial); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "nodes/s")
}

// BenchmarkRegisterCycleParallel runs the same cycle for several servers at
// once, like a RackBatch does; Ironic's single conductor serialises much of
// it, which is what the figure shows.
func BenchmarkRegisterCycleParallel(b *testing.B) {
	c := newIronic(b)
	ctx := context.Background()
	var seq atomic.Int64
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			spec := fakeSpec(fmt.Sprintf("BENCH-par-%d", seq.Add(1)))
			if _, err := c.Register(ctx, spec); err != nil {
				b.Error(err)
				return
			}
			if err := c.DeleteNode(ctx, spec.Serial); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "nodes/s")
}
