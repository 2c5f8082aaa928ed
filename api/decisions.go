package api

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/labstack/echo/v4"

	"github.com/metalflow/metalflow/credentials"
	"github.com/metalflow/metalflow/workflows"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
)

// retryRequest is the body of POST /servers/<serial>/retry: optionally a
// corrected BMC (address and/or credential) or another profile.
type retryRequest struct {
	BMC     *bmcRequest `json:"bmc,omitempty"`
	Profile string      `json:"profile,omitempty"`
}

type abortRequest struct {
	Reason string `json:"reason"`
}

func (s *Server) retry(c echo.Context) error {
	serial, err := serialParam(c)
	if err != nil {
		return err
	}
	var req retryRequest
	if err := decodeOptionalJSON(c, &req); err != nil {
		return err
	}
	if req.Profile != "" && !s.cfg.Profiles.Has(req.Profile) {
		return httpError(http.StatusUnprocessableEntity, "unknown hardware profile %q", req.Profile)
	}
	in := workflows.RetryInput{Profile: req.Profile, By: actor(c)}
	ctx, cancel := context.WithTimeout(c.Request().Context(), updateTimeout)
	defer cancel()
	if req.BMC != nil {
		if err := validateBMC(*req.BMC, false); err != nil {
			return err
		}
		in.BMC = &serverapi.BMCRef{Address: req.BMC.Address}
		if req.BMC.Username != "" || req.BMC.Password != "" {
			ref, err := s.storeBMC(ctx, serial, *req.BMC)
			if err != nil {
				return err
			}
			in.BMC.CredentialRef = ref
		}
	}
	return s.sendUpdate(c, ctx, lifecycleRef(serial), workflows.UpdateRetry, in, &workflows.DecisionResult{})
}

func (s *Server) skip(c echo.Context) error {
	serial, err := serialParam(c)
	if err != nil {
		return err
	}
	if err := readNoBody(c); err != nil {
		return err
	}
	return s.update(c, lifecycleRef(serial), workflows.UpdateSkip, workflows.SkipInput{By: actor(c)}, &workflows.DecisionResult{})
}

func (s *Server) abort(c echo.Context) error {
	serial, err := serialParam(c)
	if err != nil {
		return err
	}
	abort, err := readAbort(c)
	if err != nil {
		return err
	}
	return s.update(c, lifecycleRef(serial), workflows.UpdateAbort, abort, &workflows.DecisionResult{})
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
			return httpError(http.StatusBadRequest, "bmc.address must be https://host[:port] (or http://), got %q", b.Address)
		}
	}
	if full || b.Username != "" || b.Password != "" {
		if b.Username == "" || b.Password == "" {
			return httpError(http.StatusBadRequest, "bmc.username and bmc.password are both required")
		}
	}
	if !full && b.Address == "" && b.Username == "" {
		return httpError(http.StatusBadRequest, "bmc must give an address, a credential, or both")
	}
	return nil
}
