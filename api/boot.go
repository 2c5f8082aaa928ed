package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"
	"go.temporal.io/api/serviceerror"

	"github.com/metalflow/metalflow/api/internal/httpx"
	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/workflows"
)

// BootConfig says how the boot service describes an install to a
// netbooting server.
type BootConfig struct {
	// PublicURL is how servers on the provisioning network reach this API,
	// e.g. http://10.0.0.1:8080. Every URL in scripts and configs starts so.
	PublicURL string
	// KernelURL and InitrdURL are the installer images. Empty means the
	// placeholder images this service serves itself, which only the
	// simulated fleet can "boot".
	KernelURL string
	InitrdURL string
	// KernelArgs are appended to the installer's command line.
	KernelArgs string
}

func (s *Server) bootURL(path string) string {
	return strings.TrimRight(s.cfg.Boot.PublicURL, "/") + path
}

// ipxeScript answers a netbooting server. With an install pending for its
// MAC it chains the installer; otherwise it exits to the next boot device,
// the local disk, so a finished server never reinstalls by accident.
func (s *Server) ipxeScript(c echo.Context) error {
	mac := c.QueryParam("mac")
	if mac == "" {
		return httpx.Errorf(http.StatusBadRequest, "mac query parameter is required (iPXE: ?mac=${mac})")
	}
	b, err := s.cfg.Inventory.ActiveBootForMAC(c.Request().Context(), mac)
	if errors.Is(err, inventory.ErrNotFound) {
		return c.String(http.StatusOK, "#!ipxe\necho metalflow: no install pending for ${mac}; booting from local disk\nexit\n")
	}
	if err != nil {
		return err
	}
	kernel, initrd := s.cfg.Boot.KernelURL, s.cfg.Boot.InitrdURL
	if kernel == "" {
		kernel = s.bootURL("/boot/files/vmlinuz")
	}
	if initrd == "" {
		initrd = s.bootURL("/boot/files/initrd.img")
	}
	// cloud-init's NoCloud datasource fetches meta-data and user-data from
	// the seed URL; the trailing slash matters.
	seed := s.bootURL(fmt.Sprintf("/boot/nocloud/%s/%d/", url.PathEscape(b.Serial), b.Attempt))
	args := "ip=dhcp ds=nocloud-net;s=" + seed
	if s.cfg.Boot.KernelArgs != "" {
		args += " " + s.cfg.Boot.KernelArgs
	}
	script := fmt.Sprintf("#!ipxe\n# metalflow install of %s, attempt %d\nkernel %s %s\ninitrd %s\nboot\n",
		b.Serial, b.Attempt, kernel, args, initrd)
	return c.String(http.StatusOK, script)
}

// pendingAttempt finds the install attempt a NoCloud URL names, refusing
// attempts that are finished, retired or expired.
func (s *Server) pendingAttempt(c echo.Context) (inventory.BootConfig, error) {
	serial := c.Param("serial")
	if err := workflows.ValidateSerial(serial); err != nil {
		return inventory.BootConfig{}, httpx.Errorf(http.StatusBadRequest, "%s", err)
	}
	b, err := s.cfg.Inventory.ActiveBoot(c.Request().Context(), serial)
	if errors.Is(err, inventory.ErrNotFound) || (err == nil && fmt.Sprint(b.Attempt) != c.Param("attempt")) {
		return inventory.BootConfig{}, httpx.Errorf(http.StatusNotFound, "no pending install attempt %s for %s", c.Param("attempt"), serial)
	}
	return b, err
}

func (s *Server) nocloudMetaData(c echo.Context) error {
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
func (s *Server) nocloudUserData(c echo.Context) error {
	b, err := s.pendingAttempt(c)
	if err != nil {
		return err
	}
	phoneHome := s.bootURL("/api/v1/boot/phone-home?token=" + url.QueryEscape(b.Token))
	return c.String(http.StatusOK, fmt.Sprintf(`#cloud-config
# metalflow install of %s, attempt %d
hostname: %s
phone_home:
  url: %q
  post: [instance_id, hostname, fqdn]
  tries: 10
`, b.Serial, b.Attempt, strings.ToLower(b.Serial), phoneHome))
}

func (s *Server) nocloudVendorData(c echo.Context) error {
	if _, err := s.pendingAttempt(c); err != nil {
		return err
	}
	return c.String(http.StatusOK, "#cloud-config\n{}\n")
}

// bootFile serves the placeholder installer images used when no real
// installer URL is configured: the simulated hosts fetch them like a real
// host fetches a kernel, so a missing route fails a netboot visibly.
func (s *Server) bootFile(c echo.Context) error {
	switch c.Param("name") {
	case "vmlinuz", "initrd.img":
		return c.Blob(http.StatusOK, "application/octet-stream",
			[]byte("metalflow placeholder installer image "+c.Param("name")+": only simulated hosts boot this\n"))
	}
	return httpx.Errorf(http.StatusNotFound, "no boot file %s", c.Param("name"))
}

// phoneHome is the installer's call back. The token is its only
// credential: it must name a pending attempt, and works once.
func (s *Server) phoneHome(c echo.Context) error {
	token := c.QueryParam("token")
	if token == "" {
		return httpx.Errorf(http.StatusBadRequest, "token query parameter is required")
	}
	ctx := c.Request().Context()
	b, err := s.cfg.Inventory.ActiveBootByToken(ctx, token)
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
	err = s.cfg.Temporal.SignalWorkflow(sctx, workflows.LifecycleWorkflowID(b.Serial), "", workflows.SignalPhoneHome,
		workflows.PhoneHome{Attempt: b.Attempt, Hostname: c.FormValue("hostname"), InstanceID: c.FormValue("instance_id")})
	if err != nil {
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			return httpx.Errorf(http.StatusConflict, "the lifecycle of %s is not running", b.Serial)
		}
		return httpx.TemporalError(err)
	}
	if _, err := s.cfg.Inventory.ConsumePhoneHome(ctx, token); err != nil && !errors.Is(err, inventory.ErrNotFound) {
		return err
	}
	// The installed host called from its own provisioning address: that
	// is where a load balancer reaches it as a backend. The socket's peer,
	// not a forwarding header a caller could write.
	if ap, err := netip.ParseAddrPort(c.Request().RemoteAddr); err == nil {
		if err := s.cfg.Inventory.SetHostAddress(ctx, b.Serial, ap.Addr().Unmap()); err != nil {
			s.cfg.Logger.Warn("recording the host address failed", "serial", b.Serial, "error", err)
		}
	}
	return c.JSON(http.StatusOK, map[string]any{"serial": b.Serial, "attempt": b.Attempt})
}
