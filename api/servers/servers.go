// Package servers is the API of a server's lifecycle: registering it,
// its status and CMDB record, the list of servers, and the decisions
// staff send it (racked, retry, skip, abort).
package servers

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/metalflow/metalflow/api/access"
	"github.com/metalflow/metalflow/api/internal/bmc"
	"github.com/metalflow/metalflow/api/internal/httpx"
	"github.com/metalflow/metalflow/auth"
	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/profiles"
	"github.com/metalflow/metalflow/workflows/image/imageapi"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/server/serverattrs"
	"github.com/metalflow/metalflow/workflows/stepapi"
)

// Inventory is what the server routes read of the CMDB.
type Inventory interface {
	httpx.Placements
	GetAsset(ctx context.Context, serial string) (inventory.Asset, error)
	History(ctx context.Context, serial string) ([]inventory.Change, error)
	TenantAssets(ctx context.Context, tenant string) ([]inventory.Asset, error)
	GetImage(ctx context.Context, name string) (inventory.Image, error)
}

// Deps is what the server routes use.
type Deps struct {
	Temporal  client.Client
	Inventory Inventory
	// Credentials seals BMC passwords; workflows get references.
	Credentials bmc.Sealer
	// BMCAddresses decides which BMC addresses a worker may be sent to.
	BMCAddresses bmc.Addresses
	// Profiles are the known hardware profiles, for input checks.
	Profiles *profiles.Catalog
	UI       httpx.TemporalUI
}

type handlers struct {
	Deps
}

// Register mounts the lifecycle's routes.
func Register(v1 *echo.Group, guard *access.Guard, d Deps) {
	h := &handlers{Deps: d}
	tenant, technician, operator := guard.AllowTenant(auth.Viewer), guard.Allow(auth.Technician), guard.Allow(auth.Operator)
	v1.POST("/servers", h.createServer, operator)
	v1.GET("/servers", h.listServers, tenant)
	v1.GET("/servers/:serial", h.getServer, tenant)
	v1.GET("/servers/:serial/asset", h.getAsset, tenant)
	v1.POST("/servers/:serial/racked", h.racked, technician, httpx.IdempotencyKey)
	v1.POST("/servers/:serial/retry", h.retry, technician, httpx.IdempotencyKey)
	v1.POST("/servers/:serial/skip", h.skip, operator, httpx.IdempotencyKey)
	v1.POST("/servers/:serial/abort", h.abort, operator, httpx.IdempotencyKey)
}

// createServerRequest is the body of POST /api/v1/servers.
type createServerRequest struct {
	Serial   string              `json:"serial"`
	BMC      *bmc.Request        `json:"bmc,omitempty"`
	Profile  string              `json:"profile,omitempty"`
	Location *serverapi.Location `json:"location,omitempty"`
	// Tenant is the cloud project that ordered the server; it becomes the
	// Ironic node's owner and lessee once the server is registered.
	Tenant string `json:"tenant,omitempty"`
	// Pools are VIPs (by name) the server joins as a backend once ready.
	Pools []string `json:"pools,omitempty"`
	// Image is a catalog image to install instead of the profile's.
	Image string `json:"image,omitempty"`
	// SSHAuthorizedKeys and UserData go to the installed OS's cloud-init
	// when metalflow deploys an image, besides the profile's.
	SSHAuthorizedKeys []string `json:"sshAuthorizedKeys,omitempty"`
	UserData          string   `json:"userData,omitempty"`
}

type createServerResponse struct {
	Serial     string `json:"serial"`
	WorkflowID string `json:"workflowId"`
	RunID      string `json:"runId"`
}

// serverResponse is a server's status plus where to look at its run.
type serverResponse struct {
	serverapi.ServerStatus
	WorkflowID  string `json:"workflowId"`
	TemporalURL string `json:"temporalUrl,omitempty"`
	// Decommission is the server's way out, once one has started.
	Decommission *decommissionSummary `json:"decommission,omitempty"`
}

// decommissionSummary points at a server's decommission from its status.
type decommissionSummary struct {
	WorkflowID string `json:"workflowId"`
	State      string `json:"state"`
	Step       string `json:"step,omitempty"`
}

func (h *handlers) createServer(c echo.Context) error {
	var req createServerRequest
	if err := httpx.DecodeJSON(c, &req); err != nil {
		return err
	}
	if err := stepapi.ValidateSerial(req.Serial); err != nil {
		return httpx.Errorf(http.StatusBadRequest, "%s", err)
	}
	if err := serverapi.ValidateTenant(req.Tenant); err != nil {
		return httpx.Errorf(http.StatusBadRequest, "%s", err)
	}
	if err := serverapi.ValidatePools(req.Pools); err != nil {
		return httpx.Errorf(http.StatusBadRequest, "%s", err)
	}
	if req.Profile != "" && !h.Profiles.Has(req.Profile) {
		return httpx.Errorf(http.StatusUnprocessableEntity, "unknown hardware profile %q (known: %s)", req.Profile, strings.Join(h.Profiles.Names(), ", "))
	}
	if err := h.checkImage(c.Request().Context(), req.Image); err != nil {
		return err
	}
	if err := checkCloudInit(req.SSHAuthorizedKeys, req.UserData); err != nil {
		return err
	}
	if req.BMC != nil {
		if err := bmc.Validate(*req.BMC, true); err != nil {
			return err
		}
	}
	if req.Location != nil {
		if err := serverapi.ValidateLocation(*req.Location); err != nil {
			return httpx.Errorf(http.StatusBadRequest, "%s", err)
		}
		if err := httpx.CheckPlacement(c.Request().Context(), h.Inventory, req.Serial, *req.Location); err != nil {
			return err
		}
	}
	if req.BMC != nil {
		site := ""
		if req.Location != nil {
			site = req.Location.Site
		}
		if err := h.BMCAddresses.Check(c.Request().Context(), req.BMC.Address, site); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), httpx.CallTimeout)
	defer cancel()
	id := serverapi.LifecycleWorkflowID(req.Serial)
	// A duplicate must not leave a stored credential behind: check first.
	if _, err := h.Temporal.DescribeWorkflowExecution(ctx, id, ""); err == nil {
		return httpx.Errorf(http.StatusConflict, "server %s already has a lifecycle (workflow %s)", req.Serial, id)
	}
	input := serverapi.ServerLifecycleInput{
		Serial: req.Serial, Location: req.Location, Profile: req.Profile, Tenant: req.Tenant, Pools: req.Pools, Image: req.Image,
		SSHAuthorizedKeys: req.SSHAuthorizedKeys, UserData: req.UserData, Actor: httpx.Actor(c),
	}
	if req.BMC != nil {
		ref, err := bmc.Seal(ctx, h.Credentials, req.Serial, *req.BMC)
		if err != nil {
			return err
		}
		input.BMC = &serverapi.BMCRef{Address: req.BMC.Address, CredentialRef: ref}
	}
	run, err := h.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:        id,
		TaskQueue: serverapi.TaskQueue,
		// One lifecycle per serial, ever: a finished or failed run is not
		// silently replaced by a second POST.
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		TypedSearchAttributes:    serverattrs.AtStart(req.Serial, time.Now()),
		// Without this the SDK hands back the existing run as if started.
		WorkflowExecutionErrorWhenAlreadyStarted: true,
	}, serverapi.ServerLifecycleName, input)
	if err != nil {
		var started *serviceerror.WorkflowExecutionAlreadyStarted
		if errors.As(err, &started) {
			return httpx.Errorf(http.StatusConflict, "server %s already has a lifecycle (workflow %s)", req.Serial, id)
		}
		return httpx.TemporalError(err)
	}
	c.Response().Header().Set(echo.HeaderLocation, "/api/v1/servers/"+url.PathEscape(req.Serial))
	return c.JSON(http.StatusAccepted, createServerResponse{Serial: req.Serial, WorkflowID: id, RunID: run.GetRunID()})
}

// checkImage refuses an image the catalog does not have, before anything is
// stored or started: the install would only fail at its end.
func (h *handlers) checkImage(ctx context.Context, name string) error {
	if name == "" {
		return nil
	}
	if err := imageapi.ValidateName(name); err != nil {
		return httpx.Errorf(http.StatusBadRequest, "%s", err)
	}
	_, err := h.Inventory.GetImage(ctx, name)
	if errors.Is(err, inventory.ErrNotFound) {
		return httpx.Errorf(http.StatusUnprocessableEntity, "unknown image %q: add it with POST /api/v1/images first", name)
	}
	return err
}

// checkCloudInit refuses keys and user-data the deploy agent could not
// write, by the rules a profile's are held to: malformed is a 400, a
// well-formed document setting what metalflow writes itself a 422.
func checkCloudInit(keys []string, userData string) error {
	if err := profiles.ValidateSSHAuthorizedKeys(keys); err != nil {
		return httpx.Errorf(http.StatusBadRequest, "sshAuthorizedKeys%s", err)
	}
	err := profiles.ValidateUserData(userData)
	if errors.Is(err, profiles.ErrReservedUserData) {
		return httpx.Errorf(http.StatusUnprocessableEntity, "userData: %s", err)
	}
	if err != nil {
		return httpx.Errorf(http.StatusBadRequest, "userData: %s", err)
	}
	return nil
}

func (h *handlers) getServer(c echo.Context) error {
	serial, err := httpx.SerialParam(c)
	if err != nil {
		return err
	}
	if err := h.checkTenant(c, serial); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), httpx.CallTimeout)
	defer cancel()
	id := serverapi.LifecycleWorkflowID(serial)
	var st serverapi.ServerStatus
	if err := httpx.QueryStatus(ctx, h.Temporal, httpx.LifecycleRef(serial), stepapi.QueryStatus, &st); err != nil {
		return err
	}
	res := serverResponse{ServerStatus: st, WorkflowID: id, TemporalURL: h.UI.WorkflowURL(id, st.RunID)}
	if err := h.addDecommission(ctx, &res); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, res)
}

// addDecommission shows a server's decommission in its status: once a
// server is on its way out, its lifecycle's last word (ready, installed,
// cancelled) is no longer what it is. Only servers whose lifecycle has
// reached such an end can have one, so servers being provisioned cost no
// extra call.
func (h *handlers) addDecommission(ctx context.Context, res *serverResponse) error {
	if !serverapi.HandedOver(res.State) {
		return nil
	}
	ref := httpx.DecommissionRef(res.Serial)
	var d serverapi.DecommissionStatus
	if err := httpx.QueryStatus(ctx, h.Temporal, ref, stepapi.QueryStatus, &d); err != nil {
		var he *echo.HTTPError
		if errors.As(err, &he) && he.Code == http.StatusNotFound {
			return nil
		}
		return err
	}
	res.Decommission = &decommissionSummary{WorkflowID: ref.ID, State: d.State, Step: d.Step}
	res.State = serverapi.ServerState(res.State, d.State)
	return nil
}

func (h *handlers) racked(c echo.Context) error {
	serial, err := httpx.SerialParam(c)
	if err != nil {
		return err
	}
	var loc serverapi.Location
	if err := httpx.DecodeJSON(c, &loc); err != nil {
		return err
	}
	// The workflow's validator checks the same; checking here too answers
	// malformed input without a round trip and gives it the 422 it deserves.
	if err := serverapi.ValidateLocation(loc); err != nil {
		return httpx.Errorf(http.StatusUnprocessableEntity, "%s", err)
	}
	// Refuse what the CMDB already knows is wrong (unknown rack, unit out
	// of range or taken) without touching the workflow; the workflow's
	// claim stays authoritative for races between two technicians.
	if err := httpx.CheckPlacement(c.Request().Context(), h.Inventory, serial, loc); err != nil {
		return err
	}
	return httpx.Update(c, h.Temporal, httpx.LifecycleRef(serial), serverapi.UpdateRacked, serverapi.RackedInput{Location: loc}, &serverapi.RackedResult{})
}
