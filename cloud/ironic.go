// Package cloud registers servers in OpenStack: Ironic nodes for bare-metal
// scheduling and Nova host aggregates for hypervisors. Every operation is
// idempotent, so a Temporal activity may run it twice, and its errors say
// whether retrying can help (IsRetryable, KindOf).
package cloud

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/baremetal/noauth"
	"github.com/gophercloud/gophercloud/v2/openstack/config"
	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"
)

// IronicMicroversion is the Bare Metal API version requested: the newest
// Ironic 21.4 (2023.1, Debian 12) serves, which has owner, lessee,
// conductor groups and name lookups.
const IronicMicroversion = "1.82"

// defaultPollInterval paces waits for provision-state transitions; Ironic's
// fake and Redfish transitions take a few hundred milliseconds.
const defaultPollInterval = 250 * time.Millisecond

// IronicOptions says how to reach Ironic. Exactly one of URL (standalone
// Ironic with auth_strategy=noauth) or Cloud (Keystone through clouds.yaml)
// is set.
type IronicOptions struct {
	// URL of a noauth Ironic, e.g. http://127.0.0.1:6385 (with or without /v1).
	URL string
	// Cloud names an entry in clouds.yaml; Ironic is then found through
	// Keystone's catalog.
	Cloud string
	// CloudsYAML is the clouds.yaml path; empty searches the usual places
	// (OS_CLIENT_CONFIG_FILE, ./clouds.yaml, ~/.config/openstack, /etc/openstack).
	CloudsYAML string
	// HTTPClient replaces the default client (e.g. for timeouts or TLS).
	HTTPClient *http.Client
	// PollInterval paces waits for transitions; zero means 250 ms.
	PollInterval time.Duration
}

// Ironic is a client of one Ironic service.
type Ironic struct {
	client *gophercloud.ServiceClient
	poll   time.Duration
}

// NewIronic connects to Ironic. With Cloud set it authenticates against
// Keystone now, so bad credentials show at start-up rather than mid-step.
func NewIronic(ctx context.Context, opts IronicOptions) (*Ironic, error) {
	var (
		sc  *gophercloud.ServiceClient
		err error
	)
	switch {
	case opts.URL != "" && opts.Cloud != "":
		return nil, errors.New("ironic: set either a noauth URL or a clouds.yaml cloud, not both")
	case opts.URL != "":
		sc, err = noauthClient(opts.URL)
	case opts.Cloud != "":
		sc, err = keystoneClient(ctx, opts, func(pc *gophercloud.ProviderClient, eo gophercloud.EndpointOpts) (*gophercloud.ServiceClient, error) {
			return openstack.NewBareMetalV1(pc, eo)
		})
	default:
		return nil, errors.New("ironic: no URL and no clouds.yaml cloud given")
	}
	if err != nil {
		return nil, err
	}
	if opts.HTTPClient != nil && opts.Cloud == "" {
		sc.ProviderClient.HTTPClient = *opts.HTTPClient
	}
	sc.Microversion = IronicMicroversion
	poll := opts.PollInterval
	if poll <= 0 {
		poll = defaultPollInterval
	}
	return &Ironic{client: sc, poll: poll}, nil
}

func noauthClient(raw string) (*gophercloud.ServiceClient, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("ironic: URL %q is not an http(s) URL", raw)
	}
	endpoint := strings.TrimSuffix(u.String(), "/")
	if !strings.HasSuffix(endpoint, "/v1") {
		endpoint += "/v1"
	}
	return noauth.NewBareMetalNoAuth(noauth.EndpointOpts{IronicEndpoint: endpoint})
}

// keystoneClient authenticates with the clouds.yaml entry and builds the
// service client newService asks for from the catalog.
func keystoneClient(ctx context.Context, opts IronicOptions,
	newService func(*gophercloud.ProviderClient, gophercloud.EndpointOpts) (*gophercloud.ServiceClient, error),
) (*gophercloud.ServiceClient, error) {
	parse := []clouds.ParseOption{clouds.WithCloudName(opts.Cloud)}
	if opts.CloudsYAML != "" {
		parse = append(parse, clouds.WithLocations(opts.CloudsYAML))
	}
	auth, eo, tlsConfig, err := clouds.Parse(parse...)
	if err != nil {
		return nil, fmt.Errorf("clouds.yaml cloud %q: %w", opts.Cloud, err)
	}
	var provider *gophercloud.ProviderClient
	if opts.HTTPClient != nil {
		provider, err = config.NewProviderClient(ctx, auth, config.WithHTTPClient(*opts.HTTPClient))
	} else {
		provider, err = config.NewProviderClient(ctx, auth, config.WithTLSConfig(tlsConfig))
	}
	if err != nil {
		return nil, fmt.Errorf("keystone authentication for cloud %q: %w", opts.Cloud, err)
	}
	return newService(provider, eo)
}
