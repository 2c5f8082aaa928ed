//go:build !agent

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/metalflow/metalflow/hardware"
)

const bmcUsage = `usage: metalflow bmc --address URL --user U --password P [--insecure] <command>

commands:
  power status|on|off|cycle|soft
  boot pxe|disk|cd|bios [--once] [--legacy]
  bios get [KEY...]
  bios set KEY=VALUE...
  bios reset
  inventory
  raid list
  raid create --level 1 --drives a,b [--name NAME]
  raid delete VOLUME-ID
  media insert URL
  media eject`

// bmcTarget is the BMC an operator points the tool at.
type bmcTarget struct {
	address, user, password string
	insecure                bool
	caFile                  string
	timeout                 time.Duration
}

// runBMC is an operator's Redfish tool for one real (or simulated) BMC,
// built on package hardware as metalflow's workers are.
func runBMC(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var t bmcTarget
	fs := flag.NewFlagSet("bmc", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, bmcUsage)
		fmt.Fprintln(stderr, "\nflags:")
		fs.PrintDefaults()
	}
	fs.StringVar(&t.address, "address", "", "BMC URL, https://host[:port] (http:// for plain HTTP)")
	fs.StringVar(&t.user, "user", "", "BMC user")
	fs.StringVar(&t.password, "password", "", "BMC password (default: $METALFLOW_BMC_PASSWORD)")
	fs.BoolVar(&t.insecure, "insecure", false, "do not verify the BMC's TLS certificate")
	fs.StringVar(&t.caFile, "ca-cert", "", "PEM file of the CA that signed the BMC certificate")
	fs.DurationVar(&t.timeout, "timeout", 60*time.Second, "give up on the BMC after this long")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if t.password == "" {
		t.password = os.Getenv("METALFLOW_BMC_PASSWORD")
	}
	if t.address == "" || t.user == "" {
		return usageError{errors.New("--address and --user are required")}
	}
	u, err := url.Parse(t.address)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Hostname() == "" {
		return usageError{fmt.Errorf("--address %q: want https://host[:port]", t.address)}
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return usageError{errors.New("no command\n" + bmcUsage)}
	}
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()

	var run func() error
	switch rest[0] {
	case "power":
		run = func() error { return bmcPower(ctx, t, rest[1:], stdout) }
	case "boot":
		run = func() error { return bmcBoot(ctx, t, rest[1:], stdout, stderr) }
	case "bios":
		run = func() error { return bmcBios(ctx, t, rest[1:], stdout) }
	case "inventory":
		if len(rest) != 1 {
			return usageError{errors.New("usage: inventory")}
		}
		run = func() error { return bmcInventory(ctx, t, stdout) }
	case "raid":
		run = func() error { return bmcRAID(ctx, t, rest[1:], stdout, stderr) }
	case "media":
		run = func() error { return bmcMedia(ctx, t, rest[1:], stdout) }
	default:
		return usageError{fmt.Errorf("unknown command %q\n%s", rest[0], bmcUsage)}
	}
	if err := run(); err != nil {
		var ue usageError
		if errors.As(err, &ue) || errors.Is(err, flag.ErrHelp) {
			return err
		}
		return bmcFailure(err)
	}
	return nil
}

// endpoint is the target as package hardware takes it; --ca-cert is read
// here so that a missing file is a usage error, not a BMC failure.
func (t bmcTarget) endpoint() (hardware.Endpoint, error) {
	ep := hardware.Endpoint{Address: t.address, Username: t.user, Password: t.password, InsecureTLS: t.insecure, Timeout: t.timeout}
	if t.caFile != "" && !t.insecure {
		pem, err := os.ReadFile(t.caFile)
		if err != nil {
			return ep, usageError{err}
		}
		ep.CACertPEM = pem
	}
	return ep, nil
}

// withMachine logs in through package hardware, metalflow's one way to a
// BMC, so the operator sees what the workers would.
func withMachine(ctx context.Context, t bmcTarget, do func(hardware.OperatorMachine) error) error {
	ep, err := t.endpoint()
	if err != nil {
		return err
	}
	m, err := hardware.Dial(ctx, ep)
	if err != nil {
		return err
	}
	defer m.Close(context.Background())
	om, ok := m.(hardware.OperatorMachine)
	if !ok {
		return errors.New("this connection offers no operator commands")
	}
	return do(om)
}

func bmcPower(ctx context.Context, t bmcTarget, args []string, stdout io.Writer) error {
	if len(args) != 1 {
		return usageError{errors.New("usage: power status|on|off|cycle|soft")}
	}
	action := args[0]
	switch action {
	case "status", hardware.PowerOn, hardware.PowerOff, hardware.PowerCycle, hardware.PowerSoft:
	default:
		return usageError{fmt.Errorf("unknown power action %q (status, on, off, cycle, soft)", action)}
	}
	return withMachine(ctx, t, func(m hardware.OperatorMachine) error {
		if action == "status" {
			state, err := m.PowerState(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintln(stdout, redfishPowerState(state))
			return nil
		}
		if err := m.SetPower(ctx, action); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "power %s: requested\n", action)
		return nil
	})
}

// redfishPowerState prints the state as the BMC spells it, which is what
// an operator compares with the BMC's own web page.
func redfishPowerState(s string) string {
	switch s {
	case "on":
		return "On"
	case "off":
		return "Off"
	case "poweringon":
		return "PoweringOn"
	case "poweringoff":
		return "PoweringOff"
	}
	return s
}

// bmcSplitArgs lets subcommand flags follow positional words
// ("boot pxe --once"), which flag.Parse alone does not.
func bmcSplitArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var flags, words []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" {
			words = append(words, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		f := fs.Lookup(name)
		if f == nil {
			continue // flag.Parse reports it
		}
		if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
			continue
		}
		if i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	if err := fs.Parse(flags); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, usageError{err}
	}
	return words, nil
}

func bmcBoot(ctx context.Context, t bmcTarget, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("boot", flag.ContinueOnError)
	fs.SetOutput(stderr)
	once := fs.Bool("once", false, "only for the next boot (default: every boot)")
	legacy := fs.Bool("legacy", false, "legacy BIOS boot instead of UEFI")
	words, err := bmcSplitArgs(fs, args)
	if err != nil {
		return err
	}
	devices := map[string]string{"pxe": hardware.BootPXE, "disk": hardware.BootDisk, "cd": hardware.BootCD,
		"bios": hardware.BootBIOSSetup, "http": hardware.BootUEFIHTTP}
	if len(words) != 1 || devices[words[0]] == "" {
		return usageError{errors.New("usage: boot pxe|disk|cd|bios|http [--once] [--legacy]")}
	}
	return withMachine(ctx, t, func(m hardware.OperatorMachine) error {
		if err := m.SetBootDeviceMode(ctx, devices[words[0]], *once, !*legacy); err != nil {
			return err
		}
		when := "every boot"
		if *once {
			when = "next boot only"
		}
		fmt.Fprintf(stdout, "boot from %s (%s)\n", words[0], when)
		return nil
	})
}

func bmcBios(ctx context.Context, t bmcTarget, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usageError{errors.New("usage: bios get [KEY...] | bios set KEY=VALUE... | bios reset")}
	}
	switch args[0] {
	case "get":
		return withMachine(ctx, t, func(m hardware.OperatorMachine) error {
			attrs, err := m.BIOS(ctx)
			if err != nil {
				return err
			}
			keys := args[1:]
			if len(keys) == 0 {
				for k := range attrs {
					keys = append(keys, k)
				}
				sort.Strings(keys)
			}
			for _, k := range keys {
				v, ok := attrs[k]
				if !ok {
					return fmt.Errorf("no BIOS attribute %q", k)
				}
				fmt.Fprintf(stdout, "%s=%s\n", k, v)
			}
			return nil
		})
	case "set":
		if len(args) < 2 {
			return usageError{errors.New("usage: bios set KEY=VALUE...")}
		}
		want := map[string]string{}
		for _, kv := range args[1:] {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return usageError{fmt.Errorf("%q is not KEY=VALUE", kv)}
			}
			want[k] = v
		}
		return withMachine(ctx, t, func(m hardware.OperatorMachine) error {
			if err := m.SetBIOS(ctx, want); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%d BIOS attribute(s) staged; they apply at the next reset\n", len(want))
			return nil
		})
	case "reset":
		if len(args) != 1 {
			return usageError{errors.New("usage: bios reset")}
		}
		return withMachine(ctx, t, func(m hardware.OperatorMachine) error {
			if err := m.ResetBIOS(ctx); err != nil {
				return err
			}
			fmt.Fprintln(stdout, "BIOS defaults staged; they apply at the next reset")
			return nil
		})
	}
	return usageError{fmt.Errorf("unknown bios command %q (get, set, reset)", args[0])}
}

// bmcInventory prints the inventory inspection records on the asset.
func bmcInventory(ctx context.Context, t bmcTarget, stdout io.Writer) error {
	return withMachine(ctx, t, func(m hardware.OperatorMachine) error {
		inv, err := m.Inventory(ctx)
		if err != nil {
			return err
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(inv)
	})
}

func bmcMedia(ctx context.Context, t bmcTarget, args []string, stdout io.Writer) error {
	image := ""
	switch {
	case len(args) == 2 && args[0] == "insert":
		image = args[1]
	case len(args) == 1 && args[0] == "eject":
	default:
		return usageError{errors.New("usage: media insert URL | media eject")}
	}
	return withMachine(ctx, t, func(m hardware.OperatorMachine) error {
		if image == "" {
			if err := m.EjectMedia(ctx); err != nil {
				return err
			}
			fmt.Fprintln(stdout, "virtual CD ejected")
			return nil
		}
		if err := m.InsertMedia(ctx, image); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "virtual CD %s inserted\n", image)
		return nil
	})
}

func bmcRAID(ctx context.Context, t bmcTarget, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{errors.New("usage: raid list | raid create --level N --drives a,b | raid delete ID")}
	}
	fs := flag.NewFlagSet("raid "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	level := fs.String("level", "", "RAID level: 0, 1, 5, 6, 10 (or RAID1 ...)")
	drives := fs.String("drives", "", "comma-separated drive Ids (as raid list shows them)")
	name := fs.String("name", "", "volume name")
	words, err := bmcSplitArgs(fs, args[1:])
	if err != nil {
		return err
	}
	switch {
	case args[0] == "list" && len(words) == 0:
	case args[0] == "create" && len(words) == 0:
		if *level == "" || *drives == "" {
			return usageError{errors.New("usage: raid create --level N --drives a,b [--name NAME]")}
		}
	case args[0] == "delete" && len(words) == 1:
	default:
		return usageError{errors.New("usage: raid list | raid create --level N --drives a,b | raid delete ID")}
	}
	return withMachine(ctx, t, func(m hardware.OperatorMachine) error {
		switch args[0] {
		case "list":
			return raidList(ctx, m, stdout)
		case "create":
			var ids []string
			for _, d := range strings.Split(*drives, ",") {
				ids = append(ids, strings.TrimSpace(d))
			}
			v, err := m.CreateVolume(ctx, hardware.VolumeRequest{RAIDType: *level, DriveIDs: ids, Name: *name})
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s volume created: %s\n", v.RAIDType, v.ID)
			return nil
		}
		if err := m.DeleteVolume(ctx, words[0]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "volume %s deleted\n", words[0])
		return nil
	})
}

func raidList(ctx context.Context, m hardware.Machine, stdout io.Writer) error {
	ctls, err := m.Storage(ctx)
	if err != nil {
		return err
	}
	for _, c := range ctls {
		fmt.Fprintf(stdout, "storage %s\n", c.ID)
		for _, d := range c.Drives {
			fmt.Fprintf(stdout, "  drive  %-50s %8.1f GB %s %s\n", d.ID, float64(d.CapacityBytes)/1e9, d.MediaType, d.Model)
		}
		for _, v := range c.Volumes {
			fmt.Fprintf(stdout, "  volume %-50s %-7s %8.1f GB drives %s\n", v.ID, v.RAIDType, float64(v.CapacityBytes)/1e9, strings.Join(v.DriveIDs, ","))
		}
	}
	return nil
}

// bmcFailure turns a BMC failure into the one line an operator needs, by
// the kind package hardware gave it.
func bmcFailure(err error) error {
	var he *hardware.Error
	if !errors.As(err, &he) {
		return errors.New(lastLine(err.Error()))
	}
	msg := lastLine(he.Err.Error())
	switch he.Kind {
	case hardware.AuthFailed:
		if strings.Contains(msg, "certificate") || strings.Contains(msg, "x509") {
			return fmt.Errorf("TLS certificate not trusted (use --ca-cert or --insecure): %s", msg)
		}
		return errors.New("authentication failed (401): check --user and --password")
	case hardware.Unsupported:
		return fmt.Errorf("unsupported by this BMC: %s: %s", he.Op, msg)
	case hardware.Transient:
		if len(msg) > 4 && msg[0] == '5' && msg[3] == ':' {
			return fmt.Errorf("BMC failing, retry later: %s: %s", he.Op, msg)
		}
		return fmt.Errorf("BMC unreachable: %s: %s", he.Op, msg)
	}
	return fmt.Errorf("%s: %s", he.Op, msg)
}

// lastLine keeps the innermost cause of a multi-line bmclib error.
func lastLine(msg string) string {
	var lines []string
	for _, l := range strings.Split(msg, "\n") {
		l = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "*"))
		if l != "" && !strings.HasSuffix(l, "errors occurred:") && !strings.HasSuffix(l, "error occurred:") {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		return msg
	}
	return lines[0]
}
