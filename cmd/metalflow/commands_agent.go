//go:build agent

package main

// commands, built with -tags agent, is the deploy agent's command alone:
// the agent initramfs carries this binary, and leaving out the other roles
// keeps the Temporal server, Echo, bmclib and the rest out of it, so the
// initramfs is small and quick to fetch over iPXE and to unpack.
func commands() map[string]command {
	return map[string]command{
		"agent": {"deploy agent in the agent initramfs: inventory, plan, image to disk, seed (reads metalflow.url/token from the kernel command line)", runAgent},
	}
}
