package api

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/labstack/echo/v4"

	"github.com/metalflow/metalflow/activities"
	"github.com/metalflow/metalflow/api/internal/httpx"
	"github.com/metalflow/metalflow/credentials"
	"github.com/metalflow/metalflow/workflows"
)

// retryRequest is the body of POST /servers/<serial>/retry: optionally a
// corrected BMC (address and/or credential) or another profile.
type retryRequest struct {
	BMC     *bmcRequest `json:"bmc,omitempty"`
	Profile string      `json:"profile,omitempty"`
}

func (s *Server) retry(c echo.Context) error {
	serial, err := httpx.SerialParam(c)
	if err != nil {
		return err
	}
	var req retryRequest
	if err := httpx.DecodeOptionalJSON(c, &req); err != nil {
		return err
	}
	if req.Profile != "" && !s.cfg.Profiles.Has(req.Profile) {
		return httpx.Errorf(http.StatusUnprocessableEntity, "unknown hardware profile %q", req.Profile)
	}
	in := workflows.RetryInput{Profile: req.Profile, By: httpx.Actor(c)}
	ctx, cancel := context.WithTimeout(c.Request().Context(), httpx.UpdateTimeout)
	defer cancel()
	if req.BMC != nil {
		if err := validateBMC(*req.BMC, false); err != nil {
			return err
		}
		in.BMC = &activities.BMCRef{Address: req.BMC.Address}
		if req.BMC.Username != "" || req.BMC.Password != "" {
			ref, err := s.storeBMC(ctx, serial, *req.BMC)
			if err != nil {
				return err
			}
			in.BMC.CredentialRef = ref
		}
	}
	return httpx.SendUpdate(c, ctx, s.cfg.Temporal, httpx.LifecycleRef(serial), workflows.UpdateRetry, in, &workflows.DecisionResult{})
}

func (s *Server) skip(c echo.Context) error {
	serial, err := httpx.SerialParam(c)
	if err != nil {
		return err
	}
	if err := httpx.ReadNoBody(c); err != nil {
		return err
	}
	return httpx.Update(c, s.cfg.Temporal, httpx.LifecycleRef(serial), workflows.UpdateSkip, workflows.SkipInput{By: httpx.Actor(c)}, &workflows.DecisionResult{})
}

func (s *Server) abort(c echo.Context) error {
	serial, err := httpx.SerialParam(c)
	if err != nil {
		return err
	}
	abort, err := httpx.ReadAbort(c)
	if err != nil {
		return err
	}
	return httpx.Update(c, s.cfg.Temporal, httpx.LifecycleRef(serial), workflows.UpdateAbort, abort, &workflows.DecisionResult{})
}

// storeBMC seals a BMC credential and returns its reference.
func (s *Server) storeBMC(ctx context.Context, serial string, b bmcRequest) (string, error) {
	ref, err := s.cfg.Credentials.Put(ctx, "bmc/"+serial, credentials.Credential{Username: b.Username, Password: b.Password})
	if err != nil {
		return "", fmt.Errorf("store BMC credential of %s: %w", serial, err)
	}
	return ref, nil
}

// validateBMC checks a BMC as given; for a retry only the address or only
// the credential may change.
func validateBMC(b bmcRequest, full bool) error {
	if full || b.Address != "" {
		u, err := url.Parse(b.Address)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Hostname() == "" || u.Path != "" && u.Path != "/" {
			return httpx.Errorf(http.StatusBadRequest, "bmc.address must be https://host[:port] (or http://), got %q", b.Address)
		}
	}
	if full || b.Username != "" || b.Password != "" {
		if b.Username == "" || b.Password == "" {
			return httpx.Errorf(http.StatusBadRequest, "bmc.username and bmc.password are both required")
		}
	}
	if !full && b.Address == "" && b.Username == "" {
		return httpx.Errorf(http.StatusBadRequest, "bmc must give an address, a credential, or both")
	}
	return nil
}
