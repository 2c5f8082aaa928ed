package cloud

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/aggregates"
)

// NovaMicroversion is the Compute API version requested; 2.41 adds the
// aggregate UUID and is served by every Nova since Pike.
const NovaMicroversion = "2.41"

// ComputeOptions says how to reach Nova. Nova has no standalone noauth
// mode worth deploying, so production uses Cloud; URL and Token exist for a
// fixed endpoint (and for the contract test's recorded server).
type ComputeOptions struct {
	// URL of the compute endpoint, e.g. http://nova:8774/v2.1.
	URL string
	// Token is sent as X-Auth-Token with URL.
	Token string
	// Cloud names an entry in clouds.yaml; Nova is found through Keystone.
	Cloud      string
	CloudsYAML string
	HTTPClient *http.Client
}

// Compute is a client of Nova, for host aggregates.
type Compute struct {
	client *gophercloud.ServiceClient
}

// NewCompute connects to Nova.
func NewCompute(ctx context.Context, opts ComputeOptions) (*Compute, error) {
	var (
		sc  *gophercloud.ServiceClient
		err error
	)
	switch {
	case opts.URL != "" && opts.Cloud != "":
		return nil, errors.New("nova: set either a URL or a clouds.yaml cloud, not both")
	case opts.URL != "":
		u, perr := url.Parse(opts.URL)
		if perr != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("nova: URL %q is not an http(s) URL", opts.URL)
		}
		pc := &gophercloud.ProviderClient{}
		pc.SetToken(opts.Token)
		if opts.HTTPClient != nil {
			pc.HTTPClient = *opts.HTTPClient
		}
		sc = &gophercloud.ServiceClient{ProviderClient: pc, Endpoint: gophercloud.NormalizeURL(opts.URL), Type: "compute"}
	case opts.Cloud != "":
		sc, err = keystoneClient(ctx, IronicOptions{Cloud: opts.Cloud, CloudsYAML: opts.CloudsYAML, HTTPClient: opts.HTTPClient},
			func(pc *gophercloud.ProviderClient, eo gophercloud.EndpointOpts) (*gophercloud.ServiceClient, error) {
				return openstack.NewComputeV2(pc, eo)
			})
		if err != nil {
			return nil, err
		}
	default:
		return nil, errors.New("nova: no URL and no clouds.yaml cloud given")
	}
	sc.Microversion = NovaMicroversion
	return &Compute{client: sc}, nil
}

// Aggregate is a Nova host aggregate: metalflow keeps one per failure
// domain so the scheduler can spread instances across racks.
type Aggregate struct {
	Name string
	// AvailabilityZone is given to the aggregate when it is created here.
	AvailabilityZone string
}

// AddHostToAggregate puts the hypervisor host into the named aggregate,
// creating the aggregate (with its availability zone) if it does not exist
// yet: the first hypervisor of a new rack opens its domain. A host already
// in the aggregate is success.
func (c *Compute) AddHostToAggregate(ctx context.Context, agg Aggregate, host string) error {
	const op = "add host to aggregate"
	if agg.Name == "" || host == "" || strings.Contains(agg.AvailabilityZone, ":") {
		return newError(Invalid, op, agg.Name, fmt.Sprintf("aggregate name and host are required and the availability zone may not contain ':' (aggregate %q, zone %q, host %q)", agg.Name, agg.AvailabilityZone, host), nil)
	}
	found, err := c.findAggregate(ctx, op, agg.Name)
	if IsNotFound(err) {
		found, err = aggregates.Create(ctx, c.client, aggregates.CreateOpts{Name: agg.Name, AvailabilityZone: agg.AvailabilityZone}).Extract()
		if KindOf(classify(op, agg.Name, err)) == Conflict {
			// Created concurrently by another hypervisor's step.
			found, err = c.findAggregate(ctx, op, agg.Name)
		}
	}
	if err != nil {
		return classify(op, agg.Name, err)
	}
	if agg.AvailabilityZone != "" && found.AvailabilityZone != agg.AvailabilityZone {
		return newError(Conflict, op, agg.Name, fmt.Sprintf("aggregate is in availability zone %q, not %q", found.AvailabilityZone, agg.AvailabilityZone), nil)
	}
	if slices.Contains(found.Hosts, host) {
		return nil
	}
	_, err = aggregates.AddHost(ctx, c.client, found.ID, aggregates.AddHostOpts{Host: host}).Extract()
	if err == nil {
		return nil
	}
	switch KindOf(classify(op, agg.Name, err)) {
	case NotFound:
		// Nova knows a host once its nova-compute service has registered,
		// which follows the OS install by a while: worth retrying.
		e := classify(op, agg.Name, err).(*Error)
		e.Kind = Transient
		e.msg = fmt.Sprintf("Nova does not know host %q yet (nova-compute not registered?): %s", host, e.msg)
		return e
	case Conflict:
		// 409 "already in aggregate" after a lost response or a concurrent add.
		again, gerr := aggregates.Get(ctx, c.client, found.ID).Extract()
		if gerr == nil && slices.Contains(again.Hosts, host) {
			return nil
		}
	}
	return classify(op, agg.Name, err)
}

// RemoveHostFromAggregate takes the host out of the aggregate, for
// decommissioning. A missing aggregate or a host not in it is success.
func (c *Compute) RemoveHostFromAggregate(ctx context.Context, aggregateName, host string) error {
	const op = "remove host from aggregate"
	found, err := c.findAggregate(ctx, op, aggregateName)
	if IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if !slices.Contains(found.Hosts, host) {
		return nil
	}
	_, err = aggregates.RemoveHost(ctx, c.client, found.ID, aggregates.RemoveHostOpts{Host: host}).Extract()
	if err != nil && KindOf(classify(op, aggregateName, err)) != NotFound {
		return classify(op, aggregateName, err)
	}
	return nil
}

// findAggregate looks the aggregate up by name; Nova has no name filter, so
// it lists them all (a cloud has tens, not thousands).
func (c *Compute) findAggregate(ctx context.Context, op, name string) (*aggregates.Aggregate, error) {
	page, err := aggregates.List(c.client).AllPages(ctx)
	if err != nil {
		return nil, classify(op, name, err)
	}
	all, err := aggregates.ExtractAggregates(page)
	if err != nil {
		return nil, classify(op, name, err)
	}
	for i := range all {
		if all[i].Name == name {
			return &all[i], nil
		}
	}
	return nil, newError(NotFound, op, name, "no such aggregate", nil)
}
