package netlab

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// Call runs fn on an OS thread switched into namespace ns, for work the
// test process does itself: sockets fn opens and interfaces it looks up
// belong to ns. Goroutines fn starts do not; a socket, once open, works
// from any goroutine. Call is safe from any goroutine, as it reports
// failure instead of failing the test; fn may still call t.FailNow, which
// retires the thread.
func (l *Lab) Call(ns string, fn func()) error {
	if !l.owns(ns) {
		return fmt.Errorf("netlab: %q is not a namespace of this lab", ns)
	}
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	target, err := os.Open(filepath.Join("/run/netns", ns))
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netlab: entering namespace %s: %w", ns, err)
	}
	// A thread that leaves fn early (FailNow, Goexit, panic) is still
	// locked and inside ns; the runtime ends a locked thread whose
	// goroutine exits rather than reuse it, so no other goroutine ever
	// runs in the wrong namespace.
	fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// The goroutine stays locked to this thread, inside ns, until it
		// exits; then the thread is retired as above. The caller learns of
		// it here: a test fails, as MustCall does.
		return fmt.Errorf("netlab: leaving namespace %s: %w", ns, err)
	}
	runtime.UnlockOSThread()
	return nil
}

// MustCall is Call for the test's own goroutine: it fails the test if ns
// cannot be entered or left.
func (l *Lab) MustCall(ns string, fn func()) {
	l.t.Helper()
	if err := l.Call(ns, fn); err != nil {
		l.t.Fatalf("%v", err)
	}
}
