package boot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"go.temporal.io/api/serviceerror"

	"github.com/metalflow/metalflow/api/boot/agentapi"
	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/profiles"
	"github.com/metalflow/metalflow/workflows/image/imageapi"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
)

// The deploy agent's kernel and initramfs, where this service serves them
// from the files Config names.
const (
	AgentKernelPath = pathPrefix + "agent/vmlinuz"
	AgentInitrdPath = pathPrefix + "agent/initrd.img"
)

// agentInitrdName is the name the agent's initrd has in iPXE.
const agentInitrdName = "initrd.img"

// noAgent is what staff read when a deploy meets a boot service started
// without the agent.
const noAgent = "no deploy agent configured: start the boot service with --agent-kernel and --agent-initrd"

// registerAgent mounts the agent's files and its side of agentapi.
func (s *Service) registerAgent(e *echo.Echo) {
	e.GET(AgentKernelPath, s.agentFile(func(c Config) string { return c.AgentKernel }))
	e.GET(AgentInitrdPath, s.agentFile(func(c Config) string { return c.AgentInitrd }))
	e.POST(agentapi.PathInventory, agentRoute(s.agentInventory))
	e.GET(agentapi.PathPlan, agentRoute(s.agentPlan))
	e.POST(agentapi.PathProgress, agentRoute(s.agentProgress))
	e.POST(agentapi.PathResult, agentRoute(s.agentResult))
}

// isAgentReport tells the routes whose bodies agentapi bounds itself: an
// inventory of a large server is more than a phone-home.
func isAgentReport(route string) bool {
	switch route {
	case agentapi.PathInventory, agentapi.PathProgress, agentapi.PathResult:
		return true
	}
	return false
}

func isURL(s string) bool {
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
}

// agentFile serves the agent's kernel or initramfs from the file Config
// names; a URL is fetched from where it points, not here.
func (s *Service) agentFile(which func(Config) string) echo.HandlerFunc {
	return func(c echo.Context) error {
		path := which(s.cfg)
		if path == "" || isURL(path) {
			return c.JSON(http.StatusNotFound, map[string]string{"error": "this boot service serves no deploy agent file here"})
		}
		return c.File(path)
	}
}

// deployScript chains the deploy agent for an attempt with a plan. The
// agent's command line carries where to reach this service and the
// attempt's token, which is all the agent knows.
func (s *Service) deployScript(c echo.Context, b inventory.BootConfig) error {
	if b.DiskBootedAt != nil {
		// The image is written and the disk is the boot device: a server
		// that netboots anyway must not be written again.
		return c.String(http.StatusOK, fmt.Sprintf("#!ipxe\necho metalflow: %s attempt %d is written; booting from local disk\nexit\n", b.Serial, b.Attempt))
	}
	if s.cfg.AgentKernel == "" || s.cfg.AgentInitrd == "" {
		s.failDeploy(c.Request().Context(), b, agentapi.ClassInternal, noAgent)
		return c.String(http.StatusOK, fmt.Sprintf("#!ipxe\necho metalflow: %s\nexit\n", noAgent))
	}
	kernel, initrd := s.cfg.AgentKernel, s.cfg.AgentInitrd
	if !isURL(kernel) {
		kernel = s.url(AgentKernelPath)
	}
	if !isURL(initrd) {
		initrd = s.url(AgentInitrdPath)
	}
	// The initrd is named and the kernel told its name: under UEFI the
	// kernel's EFI stub loads the initrd itself, by the initrd= argument,
	// from the files iPXE exposes (Debian's iPXE has no initrd media
	// protocol); without it the agent's kernel panics with no root. BIOS
	// kernels ignore the argument.
	return c.String(http.StatusOK, fmt.Sprintf("#!ipxe\n# metalflow deploy of %s, attempt %d\nkernel %s initrd=%s console=ttyS0 %s=%s %s=%s\ninitrd --name %s %s\nboot\n",
		b.Serial, b.Attempt, kernel, agentInitrdName, agentapi.ParamURL, strings.TrimRight(s.cfg.PublicURL, "/"), agentapi.ParamToken, b.Token,
		agentInitrdName, initrd))
}

// failDeploy tells the lifecycle that a deploy cannot go on for a reason
// this service found, so that it parks the server with the reason instead
// of waiting out the install's timeout. Best effort: the timeout remains.
func (s *Service) failDeploy(ctx context.Context, b inventory.BootConfig, class agentapi.FailureClass, msg string) {
	sctx, cancel := context.WithTimeout(ctx, signalTimeout)
	defer cancel()
	err := s.cfg.Lifecycles.SignalWorkflow(sctx, serverapi.LifecycleWorkflowID(b.Serial), "", serverapi.SignalDeployReport, serverapi.DeployReport{
		Attempt: b.Attempt, Phase: serverapi.DeployFailed, At: time.Now().UTC(), FailureClass: string(class), Failure: msg,
	})
	if err != nil {
		s.cfg.Logger.Warn("telling the lifecycle a deploy failed failed", "serial", b.Serial, "attempt", b.Attempt, "reason", msg, "error", err)
	}
}

// signalTimeout bounds the wait for Temporal to take a signal; the agent
// retries a 503.
const signalTimeout = 10 * time.Second

// agentErr is an answer to the agent other than 2xx.
type agentErr struct {
	status int
	msg    string
}

func (e *agentErr) Error() string { return e.msg }

func refuse(status int, format string, args ...any) error {
	return &agentErr{status: status, msg: fmt.Sprintf(format, args...)}
}

// agentRoute answers an agentErr with agentapi's Error body, the one the
// agent reads; anything else goes to the service's error handler.
func agentRoute(h echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		err := h(c)
		var ae *agentErr
		if errors.As(err, &ae) {
			return c.JSON(ae.status, agentapi.Error{Message: ae.msg})
		}
		return err
	}
}

// deployAttempt is the pending deploy attempt whose token the request
// carries, with its plan: no token is a 401, a token of no pending attempt
// a 403, an installer's attempt a 404.
func (s *Service) deployAttempt(c echo.Context) (inventory.BootConfig, serverapi.DeployPlan, error) {
	token, ok := agentapi.BearerToken(c.Request())
	if !ok {
		return inventory.BootConfig{}, serverapi.DeployPlan{}, refuse(http.StatusUnauthorized, "send the install attempt's token as Authorization: Bearer <token>")
	}
	b, err := s.cfg.Store.ActiveBootByToken(c.Request().Context(), token)
	if errors.Is(err, inventory.ErrNotFound) {
		return b, serverapi.DeployPlan{}, refuse(http.StatusForbidden, "token unknown, or its install attempt finished, was retired or expired")
	}
	if err != nil {
		return b, serverapi.DeployPlan{}, err
	}
	if b.DeployPlan == nil {
		return b, serverapi.DeployPlan{}, refuse(http.StatusNotFound, "install attempt %d of %s runs the installer, not the deploy agent", b.Attempt, b.Serial)
	}
	var plan serverapi.DeployPlan
	if err := json.Unmarshal(b.DeployPlan, &plan); err != nil {
		return b, plan, fmt.Errorf("the deploy plan of %s attempt %d: %w", b.Serial, b.Attempt, err)
	}
	return b, plan, nil
}

// readReport decodes an agent's JSON body, bounded as agentapi says.
// Unknown fields are fine: an agent newer than this service may send more.
func readReport(c echo.Context, into any) error {
	body := http.MaxBytesReader(c.Response(), c.Request().Body, agentapi.MaxBodyBytes)
	b, err := io.ReadAll(body)
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return refuse(http.StatusRequestEntityTooLarge, "body larger than %d bytes", agentapi.MaxBodyBytes)
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, into); err != nil {
		return refuse(http.StatusBadRequest, "malformed JSON: %s", err)
	}
	return nil
}

// forward signals the attempt's lifecycle with rep and answers 202 once
// Temporal took it. A lifecycle that is gone is a 409, which ends the
// agent's run; Temporal away is a 503, which the agent retries.
func (s *Service) forward(c echo.Context, b inventory.BootConfig, rep serverapi.DeployReport) error {
	rep.Attempt, rep.At = b.Attempt, time.Now().UTC()
	ctx, cancel := context.WithTimeout(c.Request().Context(), signalTimeout)
	defer cancel()
	err := s.cfg.Lifecycles.SignalWorkflow(ctx, serverapi.LifecycleWorkflowID(b.Serial), "", serverapi.SignalDeployReport, rep)
	var nf *serviceerror.NotFound
	switch {
	case errors.As(err, &nf):
		return refuse(http.StatusConflict, "the lifecycle of %s is not running", b.Serial)
	case err != nil:
		s.cfg.Logger.Warn("forwarding a deploy report failed", "serial", b.Serial, "attempt", b.Attempt, "phase", rep.Phase, "error", err)
		return refuse(http.StatusServiceUnavailable, "the lifecycle did not take the report yet: %s", err)
	}
	return c.NoContent(http.StatusAccepted)
}

// agentInventory forwards what the agent sees of the machine, which the
// lifecycle holds against the BMC's inspection before it decides.
func (s *Service) agentInventory(c echo.Context) error {
	b, _, err := s.deployAttempt(c)
	if err != nil {
		return err
	}
	var inv agentapi.Inventory
	if err := readReport(c, &inv); err != nil {
		return err
	}
	return s.forward(c, b, serverapi.DeployReport{Phase: serverapi.DeployInventory, Inventory: summarise(inv)})
}

// summarise is the part of the agent's inventory the lifecycle compares.
func summarise(in agentapi.Inventory) *serverapi.AgentInventory {
	out := &serverapi.AgentInventory{
		SystemSerial: in.System.Serial, CPUs: in.CPU.Count, MemoryBytes: in.MemoryBytes, BootSeconds: in.BootSeconds,
		MACs: []string{}, Disks: []serverapi.AgentDisk{},
	}
	for _, n := range in.NICs {
		if n.MAC != "" {
			out.MACs = append(out.MACs, inventory.NormalizeMAC(n.MAC))
		}
	}
	for _, d := range in.Disks {
		out.Disks = append(out.Disks, serverapi.AgentDisk{Name: d.Name, Size: d.Size, Model: d.Model, Serial: d.Serial})
	}
	return out
}

func (s *Service) agentProgress(c echo.Context) error {
	b, _, err := s.deployAttempt(c)
	if err != nil {
		return err
	}
	var p agentapi.Progress
	if err := readReport(c, &p); err != nil {
		return err
	}
	return s.forward(c, b, serverapi.DeployReport{Phase: serverapi.DeployProgress, Disk: p.Disk, BytesWritten: p.BytesWritten, BytesTotal: p.BytesTotal})
}

// agentResult forwards the agent's last word: written, or failed with its
// class, which the lifecycle acts on.
func (s *Service) agentResult(c echo.Context) error {
	b, _, err := s.deployAttempt(c)
	if err != nil {
		return err
	}
	var res agentapi.Result
	if err := readReport(c, &res); err != nil {
		return err
	}
	rep := serverapi.DeployReport{
		Phase: serverapi.DeployWritten, BytesWritten: res.Stats.ImageBytes,
		ImageMiBPerSecond: res.Stats.ImageMiBps, DiskLimitMiBPerSecond: res.Stats.DiskMiBps,
	}
	if res.Disk != nil {
		rep.Disk = res.Disk.Name
	}
	if !res.Succeeded {
		rep.Phase, rep.FailureClass, rep.Failure = serverapi.DeployFailed, string(res.Class), res.Reason
		if rep.FailureClass == "" {
			rep.FailureClass = string(agentapi.ClassInternal)
		}
		if res.DiskWiped {
			rep.Failure += " (the disk's boot signatures were wiped)"
		}
	}
	return s.forward(c, b, rep)
}

// agentPlan answers the agent asking what to write: 202 until the
// lifecycle decides, 409 with the reason once it refused, the plan once it
// released it.
func (s *Service) agentPlan(c echo.Context) error {
	b, plan, err := s.deployAttempt(c)
	if err != nil {
		return err
	}
	if b.DiskBootedAt != nil {
		return refuse(http.StatusConflict, "install attempt %d of %s is written and boots from its disk", b.Attempt, b.Serial)
	}
	switch b.Decision {
	case inventory.DeployReleased:
	case inventory.DeployRefused:
		reason := b.DecisionReason
		if reason == "" {
			reason = "the lifecycle refused the deploy"
		}
		return refuse(http.StatusConflict, "%s", reason)
	default:
		c.Response().Header().Set("Retry-After", strconv.Itoa(int(agentapi.DefaultRetryAfter/time.Second)))
		return c.NoContent(http.StatusAccepted)
	}
	out, err := s.agentPlanOf(c.Request().Context(), b, plan)
	var bad planError
	if errors.As(err, &bad) {
		// The lifecycle released a plan the agent cannot carry out: it
		// learns why now rather than at the install's timeout.
		s.failDeploy(c.Request().Context(), b, agentapi.ClassPlanInvalid, bad.Error())
		return refuse(http.StatusConflict, "%s", bad.Error())
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}

// planError is a released plan that cannot become the agent's.
type planError struct{ msg string }

func (e planError) Error() string { return e.msg }

// agentPlanOf turns the lifecycle's plan into the agent's: the image from
// the catalog, fetched from this service with the attempt's token (the
// agent sends its bearer only to agentapi's paths); hints in the agent's
// form; the first-boot seed with the phone-home URL that ends the install.
func (s *Service) agentPlanOf(ctx context.Context, b inventory.BootConfig, plan serverapi.DeployPlan) (agentapi.Plan, error) {
	img, err := s.cfg.Store.GetImage(ctx, plan.Image)
	if errors.Is(err, inventory.ErrNotFound) {
		return agentapi.Plan{}, planError{fmt.Sprintf("image %q is not in the catalog", plan.Image)}
	}
	if err != nil {
		return agentapi.Plan{}, err
	}
	format, ok := agentFormat(img.Format)
	if !ok {
		return agentapi.Plan{}, planError{fmt.Sprintf("image %s has format %q, which the deploy agent does not write", img.Name, img.Format)}
	}
	hints, err := profiles.RootDeviceHints(plan.RootDevice)
	if err != nil {
		return agentapi.Plan{}, planError{err.Error()}
	}
	out := agentapi.Plan{
		Image: agentapi.Image{
			URL:    s.url(imageapi.BootPath(img.Name) + "?token=" + url.QueryEscape(b.Token)),
			SHA256: img.SHA256, Format: format,
		},
		RootDevice:       hints,
		DiskBenchmarkMiB: s.cfg.AgentDiskBenchmarkMiB,
		Seed: agentapi.Seed{
			InstanceID: fmt.Sprintf("%s-%d", b.Serial, b.Attempt), Hostname: plan.Hostname,
			SSHAuthorizedKeys: plan.SSHAuthorizedKeys, UserData: profiles.UserDataBody(plan.UserData),
			PhoneHomeURL: s.phoneHomeURL(b.Token), MAC: plan.MAC,
		},
	}
	if out.Seed.Hostname == "" {
		out.Seed.Hostname = strings.ToLower(b.Serial)
	}
	// The catalog's size is of the bytes as stored; only a raw image's is
	// also what it occupies on the disk, which is what the agent means.
	if format == agentapi.FormatRaw {
		out.Image.Size = img.Size
	}
	return out, nil
}

// agentFormat names a catalog format as the agent does.
func agentFormat(f string) (agentapi.ImageFormat, bool) {
	switch f {
	case imageapi.FormatRaw:
		return agentapi.FormatRaw, true
	case imageapi.FormatRawGz:
		return agentapi.FormatRawGzip, true
	case imageapi.FormatRawZst:
		return agentapi.FormatRawZstd, true
	case imageapi.FormatQCOW2:
		return agentapi.FormatQCOW2, true
	}
	return "", false
}
