// Package boot is the service netbooting servers talk to: the iPXE script
// that chains an installer, the NoCloud seed cloud-init reads, and the
// installer's phone-home. Its callers are machines without credentials, so
// what it reveals is bound to one pending install attempt.
//
// It runs inside the API (Register on the API's Echo) or on its own, next
// to the machines it serves (Handler, Serve).
package boot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"go.temporal.io/api/serviceerror"

	"github.com/metalflow/metalflow/api/internal/httpx"
	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
)

// PhoneHomePath is where the installer calls back. It sits under the API's
// prefix because installers already in the field post there.
const PhoneHomePath = "/api/v1/boot/phone-home"

// pathPrefix holds everything else the service answers.
const pathPrefix = "/boot/"

// ScriptPath is the iPXE script, which the DHCP server hands to iPXE.
const ScriptPath = pathPrefix + "ipxe"

// Owns tells whether a route pattern is the boot service's, for the API's
// middleware that must treat installing machines apart from people.
func Owns(route string) bool {
	return route == PhoneHomePath || strings.HasPrefix(route, pathPrefix)
}

// Store is what the boot service reads and writes of the inventory.
type Store interface {
	ActiveBootForMAC(ctx context.Context, mac string) (inventory.BootConfig, error)
	ActiveBoot(ctx context.Context, serial string) (inventory.BootConfig, error)
	ActiveBootByToken(ctx context.Context, token string) (inventory.BootConfig, error)
	ConsumePhoneHome(ctx context.Context, token string) (inventory.BootConfig, error)
	SetHostAddress(ctx context.Context, serial string, addr netip.Addr) error
	GetImage(ctx context.Context, name string) (inventory.Image, error)
}

// Lifecycles hands a phone-home, or a deploy agent's report, to the
// server's lifecycle workflow; a Temporal client is one.
type Lifecycles interface {
	SignalWorkflow(ctx context.Context, workflowID, runID, signalName string, arg any) error
}

// Config says how the boot service describes an install to a netbooting
// server, and what it asks about one.
type Config struct {
	// PublicURL is how servers on the provisioning network reach this
	// service, e.g. http://10.0.0.1:8080. Every URL in scripts and configs
	// starts so.
	PublicURL string
	// KernelURL and InitrdURL are the installer images. Empty means the
	// placeholder images this service serves itself, which only the
	// simulated fleet can "boot".
	KernelURL string
	InitrdURL string
	// KernelArgs are appended to the installer's command line.
	KernelArgs string
	// AgentKernel and AgentInitrd are metalflow's deploy agent, which an
	// attempt with a deploy plan boots instead of the installer: files
	// this service serves itself (AgentKernelPath, AgentInitrdPath), or
	// http(s) URLs. Empty: no agent, and such an attempt fails at its
	// first netboot with a message saying so.
	AgentKernel string
	AgentInitrd string
	// AgentDiskBenchmarkMiB, when positive, has every agent write that
	// many MiB of zeros to its disk before the image and report the rate:
	// the disk's own limit, against which the image write is judged. It
	// costs a deploy that many MiB of writing; off by default.
	AgentDiskBenchmarkMiB int

	Store      Store
	Lifecycles Lifecycles
	Logger     *slog.Logger
	// Mounts add other packages' routes under the service's prefix
	// (/boot), so they are served wherever the service runs: the image
	// bytes of package images.
	Mounts []func(boot *echo.Group)
}

// Service answers netbooting servers.
type Service struct {
	cfg Config
}

// New builds the boot service.
func New(cfg Config) *Service {
	return &Service{cfg: cfg}
}

// Register mounts the service's routes on e, which brings its own
// middleware and error handler.
func (s *Service) Register(e *echo.Echo) {
	e.GET(ScriptPath, s.ipxeScript)
	e.GET(pathPrefix+"nocloud/:serial/:attempt/meta-data", s.nocloudMetaData)
	e.GET(pathPrefix+"nocloud/:serial/:attempt/user-data", s.nocloudUserData)
	e.GET(pathPrefix+"nocloud/:serial/:attempt/vendor-data", s.nocloudVendorData)
	e.GET(pathPrefix+"files/:name", s.bootFile)
	e.POST(PhoneHomePath, s.phoneHome)
	s.registerAgent(e)
	g := e.Group(strings.TrimSuffix(pathPrefix, "/"))
	for _, mount := range s.cfg.Mounts {
		mount(g)
	}
}

// maxBodyBytes bounds request bodies: a phone-home is a few form fields.
// The deploy agent's reports are bounded by agentapi.MaxBodyBytes instead.
const maxBodyBytes = "64K"

// Handler is the service alone, answering errors as the API does.
func (s *Service) Handler() http.Handler {
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = httpx.ErrorHandler(s.cfg.Logger)
	e.Use(middleware.Recover())
	e.Use(httpx.RequestLog(s.cfg.Logger))
	e.Use(middleware.BodyLimitWithConfig(middleware.BodyLimitConfig{
		Limit: maxBodyBytes, Skipper: func(c echo.Context) bool { return isAgentReport(c.Path()) },
	}))
	s.Register(e)
	return e
}

// Serve answers on ln until ctx ends, then lets requests in flight finish.
func (s *Service) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		// A phone-home waits for Temporal to take the signal.
		WriteTimeout: 30 * time.Second,
		IdleTimeout:  120 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (s *Service) url(path string) string {
	return strings.TrimRight(s.cfg.PublicURL, "/") + path
}

// ipxeScript answers a netbooting server. With an install pending for its
// MAC it chains the installer, or the deploy agent when the attempt
// carries a deploy plan; otherwise it exits to the next boot device, the
// local disk, so a finished server never reinstalls by accident.
func (s *Service) ipxeScript(c echo.Context) error {
	mac := c.QueryParam("mac")
	if mac == "" {
		return httpx.Errorf(http.StatusBadRequest, "mac query parameter is required (iPXE: ?mac=${mac})")
	}
	b, err := s.cfg.Store.ActiveBootForMAC(c.Request().Context(), mac)
	if errors.Is(err, inventory.ErrNotFound) {
		return c.String(http.StatusOK, "#!ipxe\necho metalflow: no install pending for ${mac}; booting from local disk\nexit\n")
	}
	if err != nil {
		return err
	}
	if b.DeployPlan != nil {
		return s.deployScript(c, b)
	}
	kernel, initrd := s.cfg.KernelURL, s.cfg.InitrdURL
	if kernel == "" {
		kernel = s.url("/boot/files/vmlinuz")
	}
	if initrd == "" {
		initrd = s.url("/boot/files/initrd.img")
	}
	// cloud-init's NoCloud datasource fetches meta-data and user-data from
	// the seed URL; the trailing slash matters.
	seed := s.url(fmt.Sprintf("/boot/nocloud/%s/%d/", url.PathEscape(b.Serial), b.Attempt))
	args := "ip=dhcp ds=nocloud-net;s=" + seed
	if s.cfg.KernelArgs != "" {
		args += " " + s.cfg.KernelArgs
	}
	// Named, and the kernel told the name, as the agent's: under UEFI an
	// EFI-stub kernel loads its initrd itself by initrd=, from the files
	// iPXE exposes; under BIOS the argument is ignored.
	script := fmt.Sprintf("#!ipxe\n# metalflow install of %s, attempt %d\nkernel %s initrd=%s %s\ninitrd --name %s %s\nboot\n",
		b.Serial, b.Attempt, kernel, installerInitrdName, args, installerInitrdName, initrd)
	return c.String(http.StatusOK, script)
}

// installerInitrdName is the name the installer's initrd has in iPXE.
const installerInitrdName = "installer.img"

// Pending tells the DHCP server whether mac has an install pending: the
// question the iPXE script answers, asked before the firmware is given a
// boot file at all.
func (s *Service) Pending(ctx context.Context, mac string) (bool, error) {
	_, err := s.cfg.Store.ActiveBootForMAC(ctx, mac)
	if errors.Is(err, inventory.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// pendingAttempt finds the install attempt a NoCloud URL names, refusing
// attempts that are finished, retired or expired.
func (s *Service) pendingAttempt(c echo.Context) (inventory.BootConfig, error) {
	serial := c.Param("serial")
	if err := stepapi.ValidateSerial(serial); err != nil {
		return inventory.BootConfig{}, httpx.Errorf(http.StatusBadRequest, "%s", err)
	}
	b, err := s.cfg.Store.ActiveBoot(c.Request().Context(), serial)
	if errors.Is(err, inventory.ErrNotFound) || (err == nil && fmt.Sprint(b.Attempt) != c.Param("attempt")) {
		return inventory.BootConfig{}, httpx.Errorf(http.StatusNotFound, "no pending install attempt %s for %s", c.Param("attempt"), serial)
	}
	return b, err
}

func (s *Service) nocloudMetaData(c echo.Context) error {
	b, err := s.pendingAttempt(c)
	if err != nil {
		return err
	}
	return c.String(http.StatusOK, fmt.Sprintf("instance-id: %s-install-%d\nlocal-hostname: %s\n",
		b.Serial, b.Attempt, strings.ToLower(b.Serial)))
}

// nocloudUserData is the installer's cloud-config. Its phone_home URL
// carries the attempt's one-time token: the only secret a netbooting server
// gets, valid for this attempt alone.
func (s *Service) nocloudUserData(c echo.Context) error {
	b, err := s.pendingAttempt(c)
	if err != nil {
		return err
	}
	phoneHome := s.phoneHomeURL(b.Token)
	return c.String(http.StatusOK, fmt.Sprintf(`#cloud-config
# metalflow install of %s, attempt %d
hostname: %s
phone_home:
  url: %q
  post: [instance_id, hostname, fqdn]
  tries: 10
`, b.Serial, b.Attempt, strings.ToLower(b.Serial), phoneHome))
}

// phoneHomeURL is where an installed OS calls back, with the attempt's
// token: the only secret a netbooting server gets, valid for this attempt.
func (s *Service) phoneHomeURL(token string) string {
	return s.url(PhoneHomePath + "?token=" + url.QueryEscape(token))
}

func (s *Service) nocloudVendorData(c echo.Context) error {
	if _, err := s.pendingAttempt(c); err != nil {
		return err
	}
	return c.String(http.StatusOK, "#cloud-config\n{}\n")
}

// bootFile serves the placeholder installer images used when no real
// installer URL is configured: the simulated hosts fetch them like a real
// host fetches a kernel, so a missing route fails a netboot visibly.
func (s *Service) bootFile(c echo.Context) error {
	switch c.Param("name") {
	case "vmlinuz", "initrd.img":
		return c.Blob(http.StatusOK, "application/octet-stream",
			[]byte("metalflow placeholder installer image "+c.Param("name")+": only simulated hosts boot this\n"))
	}
	return httpx.Errorf(http.StatusNotFound, "no boot file %s", c.Param("name"))
}

// phoneHome is the installer's call back. The token is its only
// credential: it must name a pending attempt, and works once.
func (s *Service) phoneHome(c echo.Context) error {
	token := c.QueryParam("token")
	if token == "" {
		return httpx.Errorf(http.StatusBadRequest, "token query parameter is required")
	}
	ctx := c.Request().Context()
	b, err := s.cfg.Store.ActiveBootByToken(ctx, token)
	if errors.Is(err, inventory.ErrNotFound) {
		return httpx.Errorf(http.StatusForbidden, "phone-home token unknown, already used, or expired")
	}
	if err != nil {
		return err
	}
	// Signal first, spend the token after: if Temporal is briefly away the
	// installer's retry still holds a valid token. The workflow ignores a
	// second signal for the same attempt.
	sctx, cancel := context.WithTimeout(ctx, httpx.CallTimeout)
	defer cancel()
	err = s.cfg.Lifecycles.SignalWorkflow(sctx, serverapi.LifecycleWorkflowID(b.Serial), "", serverapi.SignalPhoneHome,
		serverapi.PhoneHome{Attempt: b.Attempt, Hostname: c.FormValue("hostname"), InstanceID: c.FormValue("instance_id")})
	if err != nil {
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			return httpx.Errorf(http.StatusConflict, "the lifecycle of %s is not running", b.Serial)
		}
		return httpx.TemporalError(err)
	}
	if _, err := s.cfg.Store.ConsumePhoneHome(ctx, token); err != nil && !errors.Is(err, inventory.ErrNotFound) {
		return err
	}
	// The installed host called from its own provisioning address: that
	// is where a load balancer reaches it as a backend. The socket's peer,
	// not a forwarding header a caller could write.
	if ap, err := netip.ParseAddrPort(c.Request().RemoteAddr); err == nil {
		if err := s.cfg.Store.SetHostAddress(ctx, b.Serial, ap.Addr().Unmap()); err != nil {
			s.cfg.Logger.Warn("recording the host address failed", "serial", b.Serial, "error", err)
		}
	}
	return c.JSON(http.StatusOK, map[string]any{"serial": b.Serial, "attempt": b.Attempt})
}
