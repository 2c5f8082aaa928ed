// Package bmc reads a BMC as staff give it (address and credential), for
// every route that takes one: a server's registration and retry, a
// decommission's retry, a rack batch. The address is held to the sites'
// BMC networks (Addresses) before anything is stored; the password goes
// straight into the credential store; only a reference goes on to a
// workflow.
package bmc

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/labstack/echo/v4"
	"github.com/metalflow/metalflow/api/internal/httpx"
	"github.com/metalflow/metalflow/credentials"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
)

// Request is a BMC in a request body.
type Request struct {
	Address  string `json:"address"`
	Username string `json:"username"`
	Password string `json:"password"`
}

// Sealer keeps a credential and returns its reference.
type Sealer interface {
	Put(ctx context.Context, scope string, c credentials.Credential) (string, error)
}

// Validate checks a BMC as given; for a retry (full false) only the
// address or only the credential may change.
func Validate(b Request, full bool) error {
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

// Seal stores a server's BMC credential and returns its reference.
func Seal(ctx context.Context, store Sealer, serial string, b Request) (string, error) {
	ref, err := store.Put(ctx, "bmc/"+serial, credentials.Credential{Username: b.Username, Password: b.Password})
	if err != nil {
		return "", fmt.Errorf("store BMC credential of %s: %w", serial, err)
	}
	return ref, nil
}

// RetryRequest is the body of a retry: optionally a corrected BMC (address
// and/or credential) or another profile.
type RetryRequest struct {
	BMC     *Request `json:"bmc,omitempty"`
	Profile string   `json:"profile,omitempty"`
}

// Ref checks the retry's BMC and seals its credential, if it gives one: a
// corrected address alone keeps the credential the workflow has. Nil when
// the retry changes no BMC.
func (r RetryRequest) Ref(ctx context.Context, store Sealer, addrs Addresses, serial string) (*serverapi.BMCRef, error) {
	if r.BMC == nil {
		return nil, nil
	}
	if err := Validate(*r.BMC, false); err != nil {
		return nil, err
	}
	if r.BMC.Address != "" {
		if err := addrs.CheckFor(ctx, r.BMC.Address, serial); err != nil {
			return nil, err
		}
	}
	ref := &serverapi.BMCRef{Address: r.BMC.Address}
	if r.BMC.Username != "" || r.BMC.Password != "" {
		cred, err := Seal(ctx, store, serial, *r.BMC)
		if err != nil {
			return nil, err
		}
		ref.CredentialRef = cred
	}
	return ref, nil
}

// Send forwards staff's retry to ref's workflow, the corrected BMC sealed
// into the credential store first: the workflow gets only a reference.
func (r RetryRequest) Send(c echo.Context, tc httpx.Workflows, store Sealer, addrs Addresses, ref httpx.WorkflowRef, serial string, in serverapi.RetryInput) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), httpx.UpdateTimeout)
	defer cancel()
	var err error
	if in.BMC, err = r.Ref(ctx, store, addrs, serial); err != nil {
		return err
	}
	return httpx.SendUpdate(c, ctx, tc, ref, stepapi.UpdateRetry, in, &stepapi.DecisionResult{})
}
