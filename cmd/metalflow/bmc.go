package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/bmc-toolbox/bmclib/v2/providers/redfish"
	"github.com/go-logr/logr"
	"github.com/stmcginnis/gofish"
	"github.com/stmcginnis/gofish/common"
	gfredfish "github.com/stmcginnis/gofish/redfish"
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
	url                     *url.URL
}

// runBMC is an operator's Redfish tool for one real (or simulated) BMC,
// built on bmclib as metalflow's workers are; RAID volumes go through
// gofish since bmclib has no volume API.
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
	t.url = u
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

func (t bmcTarget) port() string {
	if p := t.url.Port(); p != "" {
		return p
	}
	if t.url.Scheme == "http" {
		return "80"
	}
	return "443"
}

func (t bmcTarget) roots() (*x509.CertPool, error) {
	if t.caFile == "" {
		return x509.SystemCertPool()
	}
	pem, err := os.ReadFile(t.caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", t.caFile)
	}
	return pool, nil
}

// open logs in through bmclib's Redfish provider, used directly because
// bmclib's Client (v2.3.5) routes BIOS writes to no Redfish provider.
func (t bmcTarget) open(ctx context.Context) (*redfish.Conn, error) {
	opts := []redfish.Option{redfish.WithPort(t.port())}
	if !t.insecure && t.url.Scheme == "https" {
		pool, err := t.roots()
		if err != nil {
			return nil, usageError{err}
		}
		opts = append(opts, redfish.WithRootCAs(pool))
	}
	conn := redfish.New(t.url.Scheme+"://"+t.url.Hostname(), t.user, t.password, logr.Discard(), opts...)
	if err := conn.Open(ctx); err != nil {
		return nil, err
	}
	return conn, nil
}

func withConn(ctx context.Context, t bmcTarget, do func(*redfish.Conn) error) error {
	conn, err := t.open(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return do(conn)
}

func bmcPower(ctx context.Context, t bmcTarget, args []string, stdout io.Writer) error {
	if len(args) != 1 {
		return usageError{errors.New("usage: power status|on|off|cycle|soft")}
	}
	action := args[0]
	switch action {
	case "status", "on", "off", "cycle", "soft":
	default:
		return usageError{fmt.Errorf("unknown power action %q (status, on, off, cycle, soft)", action)}
	}
	return withConn(ctx, t, func(c *redfish.Conn) error {
		if action == "status" {
			state, err := c.PowerStateGet(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintln(stdout, state)
			return nil
		}
		ok, err := c.PowerSet(ctx, action)
		// bmclib reports ok=false for a graceful shutdown it did send.
		if err == nil && !ok && action != "soft" {
			err = errors.New("the BMC did not accept the power change")
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "power %s: requested\n", action)
		return nil
	})
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
	devices := map[string]string{"pxe": "pxe", "disk": "disk", "cd": "cdrom", "bios": "bios", "http": "uefi_http"}
	if len(words) != 1 || devices[words[0]] == "" {
		return usageError{errors.New("usage: boot pxe|disk|cd|bios|http [--once] [--legacy]")}
	}
	return withConn(ctx, t, func(c *redfish.Conn) error {
		if _, err := c.BootDeviceSet(ctx, devices[words[0]], !*once, !*legacy); err != nil {
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
		return withConn(ctx, t, func(c *redfish.Conn) error {
			attrs, err := c.GetBiosConfiguration(ctx)
			if err != nil {
				return err
			}
			if len(attrs) == 0 {
				return errors.New("unsupported by this BMC: no BIOS attributes readable (system ID unknown to bmclib)")
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
		return withConn(ctx, t, func(c *redfish.Conn) error {
			if err := c.SetBiosConfiguration(ctx, want); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%d BIOS attribute(s) staged; they apply at the next reset\n", len(want))
			return nil
		})
	case "reset":
		if len(args) != 1 {
			return usageError{errors.New("usage: bios reset")}
		}
		return withConn(ctx, t, func(c *redfish.Conn) error {
			if err := c.ResetBiosConfiguration(ctx); err != nil {
				return err
			}
			fmt.Fprintln(stdout, "BIOS defaults staged; they apply at the next reset")
			return nil
		})
	}
	return usageError{fmt.Errorf("unknown bios command %q (get, set, reset)", args[0])}
}

func bmcInventory(ctx context.Context, t bmcTarget, stdout io.Writer) error {
	return withConn(ctx, t, func(c *redfish.Conn) error {
		dev, err := c.Inventory(ctx)
		if err != nil {
			return err
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(dev)
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
	return withConn(ctx, t, func(c *redfish.Conn) error {
		if _, err := c.SetVirtualMedia(ctx, "CD", image); err != nil {
			return err
		}
		if image == "" {
			fmt.Fprintln(stdout, "virtual CD ejected")
		} else {
			fmt.Fprintf(stdout, "virtual CD %s inserted\n", image)
		}
		return nil
	})
}

// gofishClient logs in with gofish for what bmclib lacks (volumes).
func (t bmcTarget) gofishClient(ctx context.Context) (*gofish.APIClient, error) {
	tlsCfg := &tls.Config{InsecureSkipVerify: t.insecure} //nolint:gosec // the operator asked for it
	if !t.insecure {
		pool, err := t.roots()
		if err != nil {
			return nil, usageError{err}
		}
		tlsCfg.RootCAs = pool
	}
	hc := &http.Client{Timeout: t.timeout, Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	endpoint := t.url.Scheme + "://" + t.url.Host
	return gofish.ConnectContext(ctx, gofish.ClientConfig{Endpoint: endpoint, Username: t.user, Password: t.password, HTTPClient: hc})
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

	c, err := t.gofishClient(ctx)
	if err != nil {
		return err
	}
	defer c.Logout()
	systems, err := c.Service.Systems()
	if err != nil {
		return err
	}
	if len(systems) == 0 {
		return errors.New("the BMC lists no computer system")
	}
	storages, err := systems[0].Storage()
	if err != nil {
		return err
	}
	if len(storages) == 0 {
		return errors.New("unsupported by this BMC: no Redfish Storage")
	}
	switch args[0] {
	case "list":
		return raidList(storages, stdout)
	case "create":
		return raidCreate(ctx, c, storages, *level, strings.Split(*drives, ","), *name, stdout)
	}
	return raidDelete(ctx, c, storages, words[0], stdout)
}

func raidList(storages []*gfredfish.Storage, stdout io.Writer) error {
	for _, st := range storages {
		drives, err := st.Drives()
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "storage %s\n", st.ID)
		for _, d := range drives {
			fmt.Fprintf(stdout, "  drive  %-50s %8.1f GB %s %s\n", d.ID, float64(d.CapacityBytes)/1e9, d.MediaType, d.Model)
		}
		vols, err := st.Volumes()
		if err != nil {
			continue // no volume collection: nothing to list
		}
		for _, v := range vols {
			var ids []string
			if vd, err := v.Drives(); err == nil {
				for _, d := range vd {
					ids = append(ids, d.ID)
				}
			}
			fmt.Fprintf(stdout, "  volume %-50s %-7s %8.1f GB drives %s\n", v.ID, v.RAIDType, float64(v.CapacityBytes)/1e9, strings.Join(ids, ","))
		}
	}
	return nil
}

func raidCreate(ctx context.Context, c *gofish.APIClient, storages []*gfredfish.Storage, level string, want []string, name string, stdout io.Writer) error {
	level = strings.ToUpper(level)
	if !strings.HasPrefix(level, "RAID") {
		level = "RAID" + level
	}
	for _, st := range storages {
		drives, err := st.Drives()
		if err != nil {
			return err
		}
		var links []any
		for _, w := range want {
			for _, d := range drives {
				if d.ID == strings.TrimSpace(w) || strings.HasSuffix(d.ODataID, "/"+strings.TrimSpace(w)) {
					links = append(links, map[string]string{"@odata.id": d.ODataID})
					break
				}
			}
		}
		if len(links) != len(want) {
			continue
		}
		body := map[string]any{"RAIDType": level, "Links": map[string]any{"Drives": links}}
		if name != "" {
			body["DisplayName"] = name
		}
		resp, err := c.Post(strings.TrimRight(st.ODataID, "/")+"/Volumes", body)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if err := raidWaitTask(ctx, c, resp); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s volume created on storage %s (%s)\n", level, st.ID, resp.Header.Get("Location"))
		return nil
	}
	return fmt.Errorf("no storage controller holds all of the drives %s (see raid list)", strings.Join(want, ","))
}

func raidDelete(ctx context.Context, c *gofish.APIClient, storages []*gfredfish.Storage, id string, stdout io.Writer) error {
	for _, st := range storages {
		vols, err := st.Volumes()
		if err != nil {
			continue
		}
		for _, v := range vols {
			if v.ID != id {
				continue
			}
			resp, err := c.Delete(v.ODataID)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if err := raidWaitTask(ctx, c, resp); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "volume %s deleted\n", id)
			return nil
		}
	}
	return fmt.Errorf("no volume %q (see raid list)", id)
}

// raidWaitTask follows a 202 to the end of its task, as controllers that
// build volumes in the background answer.
func raidWaitTask(ctx context.Context, c *gofish.APIClient, resp *http.Response) error {
	if resp.StatusCode != http.StatusAccepted {
		return nil
	}
	loc := resp.Header.Get("Location")
	if loc == "" {
		return nil
	}
	if u, err := url.Parse(loc); err == nil {
		loc = u.RequestURI()
	}
	for {
		task, err := gfredfish.GetTask(c, loc)
		if err != nil {
			return err
		}
		switch task.TaskState {
		case gfredfish.CompletedTaskState:
			return nil
		case gfredfish.ExceptionTaskState, gfredfish.KilledTaskState, gfredfish.CancelledTaskState:
			msg := string(task.TaskState)
			if len(task.Messages) > 0 {
				msg += ": " + task.Messages[0].Message
			}
			return fmt.Errorf("task %s ended %s", task.ID, msg)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("task %s still %s: %w", task.ID, task.TaskState, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// bmcFailure turns bmclib's and gofish's layered errors into the one line
// an operator needs: unreachable, refused credentials, or unsupported.
func bmcFailure(err error) error {
	msg := err.Error()
	var rf *common.Error
	status := 0
	if errors.As(err, &rf) {
		status = rf.HTTPReturnedStatusCode
	}
	switch {
	case status == http.StatusUnauthorized || strings.Contains(msg, "401"):
		return errors.New("authentication failed (401): check --user and --password")
	case strings.Contains(msg, "connection refused"), strings.Contains(msg, "no such host"),
		strings.Contains(msg, "i/o timeout"), strings.Contains(msg, "Timeout exceeded"),
		strings.Contains(msg, "deadline exceeded"), strings.Contains(msg, "network is unreachable"):
		return fmt.Errorf("BMC unreachable: %s", lastLine(msg))
	case strings.Contains(msg, "certificate"):
		return fmt.Errorf("TLS certificate not trusted (use --ca-cert or --insecure): %s", lastLine(msg))
	case status == http.StatusNotFound || status == http.StatusMethodNotAllowed || strings.Contains(msg, "not supported") ||
		strings.Contains(msg, "no virtual media") || strings.Contains(msg, "does not support"):
		return fmt.Errorf("unsupported by this BMC: %s", lastLine(msg))
	}
	return errors.New(lastLine(msg))
}

// lastLine keeps the innermost cause of a multi-line bmclib error.
func lastLine(msg string) string {
	var lines []string
	for _, l := range strings.Split(msg, "\n") {
		l = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "*"))
		if l != "" && !strings.HasSuffix(l, "errors occurred:") {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		return msg
	}
	return lines[0]
}
