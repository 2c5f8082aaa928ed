// Command ironic runs the same throwaway Ironic the tests use, in the
// foreground, for `metalflow dev --ironic-url`: it prints the URL, and on
// Ctrl-C or SIGTERM stops Ironic by PID and removes its files.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/metalflow/metalflow/internal/testironic"
)

func main() {
	s, err := testironic.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ironic:", err)
		os.Exit(1)
	}
	fmt.Printf("Ironic (noauth) at %s; files in %s\n", s.URL(), s.Dir())
	fmt.Printf("  metalflow dev --ironic-url %s\n", s.URL())
	fmt.Println("Ctrl-C stops it.")
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	<-stop
	s.Stop()
}
