package bmcsim

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Host states, as an operator watching the console would name them.
const (
	HostOff         = "Off"
	HostPOST        = "POST"
	HostNetbooting  = "Netbooting"
	HostInstalling  = "Installing"
	HostOSRunning   = "OSRunning"
	HostNoOS        = "NoOS"
	HostBootFailed  = "BootFailed"
	HostBIOSSetup   = "BIOSSetup"
	HostMediaBooted = "VirtualMediaBooted"
	// HostRunning is a VM whose firmware or OS runs: what it does is on
	// its serial console (HostInfo.VM.SerialLog), not known to the BMC.
	HostRunning = "Running"
)

// HostInfo is what the simulated server behind the BMC is doing.
type HostInfo struct {
	State       string   `json:"state"`
	OSInstalled bool     `json:"os_installed"`
	BootSource  string   `json:"boot_source,omitempty"`
	LastError   string   `json:"last_error,omitempty"`
	Fetched     []string `json:"fetched,omitempty"` // URLs the last netboot fetched, in order
	PhoneHome   string   `json:"phone_home,omitempty"`
	// VM describes the virtual machine of a qemu-backed host.
	VM *VMInfo `json:"vm,omitempty"`
}

type hostState = HostInfo

// host is the server behind the BMC. The BMC turns Redfish resets and
// virtual media changes into calls on it, always with b.mu held, and reads
// the power state from it; both the simulated host and a qemu VM satisfy
// it, so the Redfish surface cannot tell them apart.
type host interface {
	powerOn(why string)  // from off, boot with the current override
	forceOff(why string) // cut the power
	shutdown()           // ask the OS to shut down (ACPI power button)
	restart(why string)  // reset now and boot again with the override
	power() string       // PowerState as Redfish reports it
	mediaChanged(slot int)
	// close runs once the BMC stops serving, without b.mu.
	close()
}

// simHost is the simulated host: its behaviour lives on the BMC (POST
// timers, the iPXE script follower), driven by the BMC's own state.
type simHost struct{ b *BMC }

func (h simHost) powerOn(why string)  { h.b.powerOnLocked(why) }
func (h simHost) forceOff(why string) { h.b.powerOffLocked(why) }
func (h simHost) shutdown()           { h.b.shutdownLocked() }
func (h simHost) restart(why string)  { h.b.powerOnLocked(why) }
func (h simHost) power() string       { return h.b.power }
func (h simHost) mediaChanged(int)    {}
func (h simHost) close()              {}

// takeBootTarget is the device this boot uses; a Once override is used up
// by it whatever comes of the boot, as on real BMCs.
func (b *BMC) takeBootTarget() string {
	source := "Hdd"
	if b.boot.Enabled != "Disabled" && b.boot.Target != "None" && b.boot.Target != "" {
		source = b.boot.Target
	}
	if b.boot.Enabled == "Once" {
		b.boot.Enabled = "Disabled"
		b.boot.Target = "None"
	}
	return source
}

// powerOnLocked starts a boot: pending BIOS settings and jobs apply at
// reset, then the host spends PostDelay in POST before it is "On".
func (b *BMC) powerOnLocked(why string) {
	b.powerGen++
	gen := b.powerGen
	b.power = PowerPoweringOn
	b.host.State = HostPOST
	b.host.LastError = ""
	b.counters.PowerOns++
	b.applyPendingBios()
	b.releaseTasksWaitingForReset()
	b.logEvent("OK", "The server is powering on ("+why+")")
	time.AfterFunc(b.cfg.scaled(b.cfg.PostDelay), func() { b.finishPOST(gen) })
}

func (b *BMC) powerOffLocked(why string) {
	b.powerGen++
	b.power = PowerOff
	b.host.State = HostOff
	b.logEvent("OK", "The server is powered off ("+why+")")
}

func (b *BMC) shutdownLocked() {
	b.powerGen++
	gen := b.powerGen
	b.power = PowerPoweringOff
	b.logEvent("OK", "A graceful shutdown was requested")
	time.AfterFunc(b.cfg.scaled(b.cfg.ShutdownDelay), func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if gen == b.powerGen {
			b.powerOffLocked("graceful shutdown")
		}
	})
}

// finishPOST ends POST and picks the boot device; a Once override is used
// up by this boot whatever comes of it.
func (b *BMC) finishPOST(gen uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if gen != b.powerGen {
		return
	}
	b.power = PowerOn
	source := b.takeBootTarget()
	b.host.BootSource = source
	switch source {
	case "Pxe", "UefiHttp":
		if b.cfg.BootURL == "" {
			b.host.State = HostNoOS
			b.logEvent("Warning", "Network boot: no boot file offered, no operating system found")
			return
		}
		b.host.State = HostNetbooting
		b.host.Fetched = nil
		b.counters.Netboots++
		vars := b.bootVars()
		go b.netboot(gen, vars)
	case "Cd", "Usb", "RemoteDrive":
		if img := b.insertedImage(); img != "" {
			b.host.State = HostMediaBooted
			b.logEvent("OK", "Booted from virtual media "+img)
			return
		}
		b.host.State = HostNoOS
		b.logEvent("Warning", "No bootable media found in "+source)
	case "BiosSetup", "Utilities", "Diags", "UefiShell":
		b.host.State = HostBIOSSetup
	default:
		if b.host.OSInstalled {
			b.host.State = HostOSRunning
			return
		}
		b.host.State = HostNoOS
		b.logEvent("Warning", "No boot device available: no operating system installed")
	}
}

func (b *BMC) bootVars() map[string]string {
	mac := ""
	if len(b.macs) > 0 {
		mac = b.macs[0]
	}
	return map[string]string{
		"mac": mac, "mac:hexhyp": strings.ReplaceAll(mac, ":", "-"), "net0/mac": mac,
		"serial": b.serial, "uuid": b.uuid, "bmc": b.id, "hostname": strings.ToLower(b.serial),
	}
}

// expandVars replaces iPXE-style ${name} references.
func expandVars(s string, vars map[string]string) string {
	var out strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			out.WriteString(s)
			return out.String()
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			out.WriteString(s)
			return out.String()
		}
		out.WriteString(s[:i])
		out.WriteString(vars[s[i+2:i+j]])
		s = s[i+j+1:]
	}
}

// bootPlan is what an iPXE script asked for.
type bootPlan struct {
	kernel     string
	kernelArgs []string
	initrds    []string
	localBoot  bool
}

// netboot follows the boot script as iPXE would, then installs and phones
// home. It holds no lock while on the network; each step re-checks that
// the power cycle it belongs to is still current.
func (b *BMC) netboot(gen uint64, vars map[string]string) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-b.closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	client := &http.Client{Timeout: 30 * time.Second}
	stillCurrent := func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return gen == b.powerGen
	}
	// A host retries its netboot while the boot server is away (iPXE and
	// the firmware's PXE retries, then the next boot attempt).
	fetch := func(do func() error) error { return retryBootRequest(ctx, stillCurrent, netbootPatience, do) }
	fail := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		b.mu.Lock()
		defer b.mu.Unlock()
		if gen != b.powerGen {
			return
		}
		b.host.State = HostBootFailed
		b.host.LastError = msg
		b.logEvent("Critical", "Network boot failed: "+msg)
	}
	fetched := func(u string) bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		if gen != b.powerGen {
			return false
		}
		b.host.Fetched = append(b.host.Fetched, u)
		return true
	}

	scriptURL := expandVars(b.cfg.BootURL, vars)
	plan := &bootPlan{}
	if err := b.followScript(ctx, client, fetch, scriptURL, vars, plan, 0, fetched); err != nil {
		fail("%v", err)
		return
	}
	if plan.localBoot {
		b.mu.Lock()
		if gen == b.powerGen {
			b.host.BootSource = "Hdd"
			b.host.State = HostNoOS
			if b.host.OSInstalled {
				b.host.State = HostOSRunning
			}
		}
		b.mu.Unlock()
		return
	}
	if plan.kernel == "" {
		fail("boot script %s named no kernel", scriptURL)
		return
	}
	for _, u := range append([]string{plan.kernel}, plan.initrds...) {
		if err := fetch(func() error { return fetchDiscard(ctx, client, u) }); err != nil {
			fail("%v", err)
			return
		}
		if !fetched(u) {
			return
		}
	}
	phoneHome := ""
	if cfgURL := configURL(plan.kernelArgs); cfgURL != "" {
		var data []byte
		err := fetch(func() (err error) { data, err = fetchBody(ctx, client, cfgURL); return err })
		if err != nil {
			fail("%v", err)
			return
		}
		if !fetched(cfgURL) {
			return
		}
		phoneHome, err = phoneHomeURL(data)
		if err != nil {
			fail("config %s: %v", cfgURL, err)
			return
		}
	}

	b.mu.Lock()
	if gen != b.powerGen {
		b.mu.Unlock()
		return
	}
	b.host.State = HostInstalling
	b.logEvent("OK", "Installer started from "+plan.kernel)
	wait := b.cfg.scaled(b.cfg.InstallDelay)
	b.mu.Unlock()

	t := time.NewTimer(wait)
	select {
	case <-t.C:
	case <-ctx.Done():
		t.Stop()
		return
	}

	// A host powered off mid-install never reaches its phone-home step.
	b.mu.Lock()
	current := gen == b.powerGen
	b.mu.Unlock()
	if !current {
		return
	}
	// The installed system calls home until it is answered: a call lost
	// while the API or its workflow engine is away would otherwise leave
	// the install waiting for its timeout.
	var phoneErr error
	if phoneHome != "" {
		phoneErr = retryBootRequest(ctx, stillCurrent, phoneHomePatience, func() error {
			return postPhoneHome(ctx, client, phoneHome, vars)
		})
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if phoneHome != "" && phoneErr == nil {
		// Answered: counted even if the host was cycled a moment later.
		b.counters.PhoneHomes++
	}
	if gen != b.powerGen {
		return
	}
	b.host.OSInstalled = true
	b.host.State = HostOSRunning
	b.host.BootSource = "Hdd"
	b.counters.Installs++
	b.logEvent("OK", "Operating system installed")
	if phoneHome == "" {
		return
	}
	b.host.PhoneHome = phoneHome
	if phoneErr != nil {
		b.host.LastError = phoneErr.Error()
		b.logEvent("Warning", "Phone home failed: "+phoneErr.Error())
	}
}

// followScript reads an iPXE script: kernel/initrd/imgfetch/module/chain,
// set, boot, exit/sanboot; other commands (dhcp, echo, ...) are no-ops.
func (b *BMC) followScript(ctx context.Context, client *http.Client, fetch func(func() error) error, scriptURL string, vars map[string]string, plan *bootPlan, depth int, fetched func(string) bool) error {
	if depth > 8 {
		return fmt.Errorf("boot script chain too deep at %s", scriptURL)
	}
	var data []byte
	err := fetch(func() (err error) { data, err = fetchBody(ctx, client, scriptURL); return err })
	if err != nil {
		return err
	}
	if !fetched(scriptURL) {
		return context.Canceled
	}
	base, _ := url.Parse(scriptURL)
	resolve := func(ref string) string {
		u, err := url.Parse(ref)
		if err != nil || base == nil {
			return ref
		}
		return base.ResolveReference(u).String()
	}
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ":") {
			continue
		}
		fields := strings.Fields(expandVars(line, vars))
		args := fields[1:]
		args = skipOptions(args)
		switch fields[0] {
		case "set":
			if len(fields) >= 3 {
				vars[fields[1]] = strings.Join(fields[2:], " ")
			}
		case "kernel":
			if len(args) == 0 {
				return fmt.Errorf("%s: kernel without URL", scriptURL)
			}
			plan.kernel = resolve(args[0])
			plan.kernelArgs = args[1:]
		case "initrd", "imgfetch", "module":
			if len(args) > 0 {
				plan.initrds = append(plan.initrds, resolve(args[0]))
			}
		case "chain":
			if len(args) == 0 {
				return fmt.Errorf("%s: chain without URL", scriptURL)
			}
			return b.followScript(ctx, client, fetch, resolve(args[0]), vars, plan, depth+1, fetched)
		case "boot":
			return nil
		case "exit", "sanboot":
			plan.localBoot = true
			return nil
		}
	}
	return nil
}

// skipOptions drops iPXE image options before the URL; --name and
// --timeout (-n, -t) take a value unless written --name=value.
func skipOptions(args []string) []string {
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		opt := args[0]
		args = args[1:]
		switch opt {
		case "--name", "-n", "--timeout", "-t":
			if len(args) > 0 {
				args = args[1:]
			}
		}
	}
	return args
}

// configURL finds the install config in kernel arguments: cloud-init's
// cloud-config-url=URL or ds=nocloud(-net);s=URL (then URL + "user-data").
func configURL(args []string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "cloud-config-url="); ok {
			return v
		}
	}
	for _, a := range args {
		v, ok := strings.CutPrefix(a, "ds=")
		if !ok {
			continue
		}
		for _, part := range strings.Split(v, ";") {
			if s, ok := strings.CutPrefix(part, "s="); ok {
				if !strings.HasSuffix(s, "/") {
					s += "/"
				}
				return s + "user-data"
			}
			if s, ok := strings.CutPrefix(part, "seedfrom="); ok {
				return strings.TrimRight(s, "/") + "/user-data"
			}
		}
	}
	return ""
}

// phoneHomeURL reads cloud-init's phone_home module settings from a
// #cloud-config document.
func phoneHomeURL(data []byte) (string, error) {
	var cfg struct {
		PhoneHome struct {
			URL string `yaml:"url"`
		} `yaml:"phone_home"`
	}
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		return "", fmt.Errorf("not a cloud-config document: %w", err)
	}
	return cfg.PhoneHome.URL, nil
}

// postPhoneHome sends what cloud-init's phone_home module sends: a form
// POST, with $INSTANCE_ID in the URL replaced.
func postPhoneHome(ctx context.Context, client *http.Client, rawURL string, vars map[string]string) error {
	u := strings.ReplaceAll(rawURL, "$INSTANCE_ID", vars["serial"])
	form := url.Values{
		"instance_id": {vars["serial"]}, "hostname": {vars["hostname"]}, "fqdn": {vars["hostname"]},
		"mac": {vars["mac"]}, "uuid": {vars["uuid"]},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return &refusedError{err}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return statusError(http.MethodPost, u, resp)
}

// How long a host keeps retrying a request to the boot server that fails
// for want of an answer, in real time (the server's outage is real).
const (
	netbootPatience   = 3 * time.Minute
	phoneHomePatience = 10 * time.Minute
)

// refusedError is an answer no retry changes (4xx, a bad URL).
type refusedError struct{ err error }

func (e *refusedError) Error() string { return e.err.Error() }
func (e *refusedError) Unwrap() error { return e.err }

// statusError is nil for 2xx, a refusedError for 4xx, and a plain error
// (worth retrying) for 5xx.
func statusError(method, u string, resp *http.Response) error {
	switch {
	case resp.StatusCode < 300:
		return nil
	case resp.StatusCode < 500:
		return &refusedError{fmt.Errorf("%s %s: %s", method, u, resp.Status)}
	}
	return fmt.Errorf("%s %s: %s", method, u, resp.Status)
}

// retryBootRequest repeats do while it fails for want of an answer (no
// connection, 5xx), the power cycle it belongs to lasts, and patience
// remains.
func retryBootRequest(ctx context.Context, current func() bool, patience time.Duration, do func() error) error {
	deadline := time.Now().Add(patience)
	wait := 250 * time.Millisecond
	for {
		err := do()
		var refused *refusedError
		if err == nil || errors.As(err, &refused) || ctx.Err() != nil || !current() || time.Now().After(deadline) {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, 5*time.Second)
	}
}

func fetchBody(ctx context.Context, client *http.Client, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, &refusedError{err}
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if err := statusError(http.MethodGet, u, resp); err != nil {
		return nil, err
	}
	return io.ReadAll(io.LimitReader(resp.Body, 1<<20))
}

func fetchDiscard(ctx context.Context, client *http.Client, u string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return &refusedError{err}
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := statusError(http.MethodGet, u, resp); err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}
