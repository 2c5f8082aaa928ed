package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
)

const v1 = "/api/v1"

// Health is nil when the API process answers at all; it checks nothing
// behind it (Temporal, the inventory).
func (c *Client) Health(ctx context.Context) error {
	_, err := c.call(ctx, http.MethodGet, "/healthz", nil, nil)
	return err
}

// Whoami is who the client's token acts as.
func (c *Client) Whoami(ctx context.Context) (Answer[Principal], error) {
	return get[Principal](ctx, c, http.MethodGet, v1+"/whoami", nil, nil)
}

// AddServer registers a server and starts its lifecycle.
func (c *Client) AddServer(ctx context.Context, s NewServer) (Answer[Started], error) {
	return get[Started](ctx, c, http.MethodPost, v1+"/servers", nil, s)
}

// ServerFilter narrows the fleet list; empty fields do not filter.
type ServerFilter struct {
	State string
	Rack  string
	// PageSize is how many servers a page holds (1 to 1000); zero is the
	// API's default.
	PageSize int
}

// ListServers returns one page of the fleet after pageToken ("" for the
// first); the answer's NextPageToken is empty on the last page.
func (c *Client) ListServers(ctx context.Context, f ServerFilter, pageToken string) (Answer[ServerList], error) {
	q := url.Values{}
	if f.State != "" {
		q.Set("state", f.State)
	}
	if f.Rack != "" {
		q.Set("rack", f.Rack)
	}
	if f.PageSize != 0 {
		q.Set("pageSize", strconv.Itoa(f.PageSize))
	}
	if pageToken != "" {
		q.Set("pageToken", pageToken)
	}
	return get[ServerList](ctx, c, http.MethodGet, v1+"/servers", q, nil)
}

// Server is one server's lifecycle.
func (c *Client) Server(ctx context.Context, serial string) (Answer[Server], error) {
	return get[Server](ctx, c, http.MethodGet, v1+"/servers/"+esc(serial), nil, nil)
}

// Racked tells the lifecycle the server is in the rack at loc.
func (c *Client) Racked(ctx context.Context, serial string, loc Location) (Answer[Racked], error) {
	return decide[Racked](ctx, c, http.MethodPost, v1+"/servers/"+esc(serial)+"/racked", loc)
}

// Retry answers an attention by running the failed step again.
func (c *Client) Retry(ctx context.Context, serial string) (Answer[Decision], error) {
	return decide[Decision](ctx, c, http.MethodPost, v1+"/servers/"+esc(serial)+"/retry", struct{}{})
}

// Skip answers an attention by going past the failed step.
func (c *Client) Skip(ctx context.Context, serial string) (Answer[Decision], error) {
	return decide[Decision](ctx, c, http.MethodPost, v1+"/servers/"+esc(serial)+"/skip", struct{}{})
}

// Abort ends the server's lifecycle, for reason.
func (c *Client) Abort(ctx context.Context, serial, reason string) (Answer[Decision], error) {
	return decide[Decision](ctx, c, http.MethodPost, v1+"/servers/"+esc(serial)+"/abort", map[string]string{"reason": reason})
}

// Racks is every rack.
func (c *Client) Racks(ctx context.Context) (Answer[RackList], error) {
	return get[RackList](ctx, c, http.MethodGet, v1+"/racks", nil, nil)
}

// CreateRack adds a rack to the inventory.
func (c *Client) CreateRack(ctx context.Context, r Rack) (Answer[Rack], error) {
	return get[Rack](ctx, c, http.MethodPost, v1+"/racks", nil, r)
}

// Rack is one rack with its occupied units.
func (c *Client) Rack(ctx context.Context, site, rack string) (Answer[RackDetail], error) {
	return get[RackDetail](ctx, c, http.MethodGet, v1+"/racks/"+esc(site)+"/"+esc(rack), nil, nil)
}

// CreateVIP asks for a VIP and starts its rollout.
func (c *Client) CreateVIP(ctx context.Context, v NewVIP) (Answer[Started], error) {
	return get[Started](ctx, c, http.MethodPost, v1+"/vips", nil, v)
}

// VIPs is every VIP.
func (c *Client) VIPs(ctx context.Context) (Answer[VIPList], error) {
	return get[VIPList](ctx, c, http.MethodGet, v1+"/vips", nil, nil)
}

// VIP is one VIP's rollout. Traffic counters ask every placed node, so the
// CLI leaves them out unless asked.
func (c *Client) VIP(ctx context.Context, name string, counters bool) (Answer[VIP], error) {
	q := url.Values{}
	if !counters {
		q.Set("counters", "false")
	}
	return get[VIP](ctx, c, http.MethodGet, v1+"/vips/"+esc(name), q, nil)
}

// ApproveVIP lets a public VIP go public.
func (c *Client) ApproveVIP(ctx context.Context, name string) (Answer[VIP], error) {
	return decide[VIP](ctx, c, http.MethodPost, v1+"/vips/"+esc(name)+"/approve", struct{}{})
}

// RejectVIP refuses a public VIP, for reason.
func (c *Client) RejectVIP(ctx context.Context, name, reason string) (Answer[VIP], error) {
	body := map[string]string{}
	if reason != "" {
		body["reason"] = reason
	}
	return decide[VIP](ctx, c, http.MethodPost, v1+"/vips/"+esc(name)+"/reject", body)
}

// CreateToken issues a token; its secret is in the answer only.
func (c *Client) CreateToken(ctx context.Context, t NewToken) (Answer[TokenCreated], error) {
	return get[TokenCreated](ctx, c, http.MethodPost, v1+"/tokens", nil, t)
}

// Tokens is every token's details.
func (c *Client) Tokens(ctx context.Context) (Answer[TokenList], error) {
	return get[TokenList](ctx, c, http.MethodGet, v1+"/tokens", nil, nil)
}

// RetryVIP answers a VIP's attention by running the failed step again.
func (c *Client) RetryVIP(ctx context.Context, name string) (Answer[Decision], error) {
	return decide[Decision](ctx, c, http.MethodPost, v1+"/vips/"+esc(name)+"/retry", struct{}{})
}

// AbortVIP answers a VIP's attention by ending its rollout, for reason.
func (c *Client) AbortVIP(ctx context.Context, name, reason string) (Answer[Decision], error) {
	return decide[Decision](ctx, c, http.MethodPost, v1+"/vips/"+esc(name)+"/abort", map[string]string{"reason": reason})
}
