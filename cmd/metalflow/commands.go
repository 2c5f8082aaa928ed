//go:build !agent

package main

// commands is every role's command. Built with -tags agent, the table is
// commands_agent.go's instead, and none of these roles is linked.
func commands() map[string]command {
	return map[string]command{
		"dev":     {"run everything in one process: embedded Temporal + Web UI, API, workers", runDev},
		"api":     {"run the REST API and operator UI against an external Temporal", runAPI},
		"worker":  {"run the lifecycle worker against an external Temporal", runWorker},
		"boot":    {"serve netbooting machines next to them: proxyDHCP (or full DHCP), TFTP of iPXE, the boot service's HTTP", runBoot},
		"probe":   {"GET a URL and fail unless it answers 2xx (container health checks)", runProbe},
		"agent":   {"deploy agent in the agent initramfs: inventory, plan, image to disk, seed (reads metalflow.url/token from the kernel command line)", runAgent},
		"lbnode":  {"run the XDP load balancer data plane on an interface as a Temporal worker on its own task queue (--temporal), or standalone from YAML (--config)", runLBNode},
		"decap":   {"install the IP-in-IP/GUE decapsulation program on a backend's interface", runDecap},
		"bench":   {"run a benchmark and print a table: bench fleet|api|parked|xdp", runBench},
		"bmcsim":  {"run a simulated fleet of Redfish BMCs (and the hosts behind them)", runBMCSim},
		"bmc":     {"talk to one BMC over Redfish: power, boot, bios, inventory, raid, media", runBMC},
		"servers": {"the fleet through the API: add, list, show, racked, retry, skip, abort", runServers},
		"racks":   {"racks through the API: show [SITE/RACK]", runRacks},
		"vips":    {"VIPs through the API: create, list, show, approve, reject, retry, abort", runVIPs},
		"tokens":  {"API tokens (admin): create, list", runTokens},
		"images":  {"the OS image catalog through the API: list, show, add, rm", runImages},
	}
}
