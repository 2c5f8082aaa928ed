package client

import (
	"encoding/json"
	"time"

	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
)

// The shapes below mirror api/openapi.json for the fields the CLI shows;
// fields it does not show stay in Answer.Raw for -o json.

// What the API passes through from the workflows' contracts, as they are.
type (
	// Location is where a server sits.
	Location = serverapi.Location
	// Step is one step's progress.
	Step = stepapi.StepStatus
	// Attention is why a workflow waits for a human.
	Attention = stepapi.Attention
	// Decision is what retry, skip or abort applied to.
	Decision = stepapi.DecisionResult
	// BIOSReport is the profile's BIOS attributes as the BMC showed them;
	// the values of a hidden (password-like) one read "(hidden)".
	BIOSReport    = serverapi.BIOSReport
	BIOSAttribute = serverapi.BIOSAttributeReport
	// RAIDReport is the profile's volumes against those found.
	RAIDReport       = serverapi.RAIDReport
	RAIDVolumeReport = serverapi.RAIDVolumeReport
	RAIDVolume       = serverapi.RAIDVolume
	// DeployStatus is an image deploy's phases, with their times, and
	// its write rates.
	DeployStatus = serverapi.DeployStatus
	// Hardware is what inspection found.
	Hardware = serverapi.Hardware
)

// BMC is how the lifecycle reaches a server's BMC.
type BMC struct {
	Address  string `json:"address"`
	Username string `json:"username"`
	Password string `json:"password"`
}

// NewServer registers a server and starts its lifecycle.
type NewServer struct {
	Serial   string    `json:"serial"`
	BMC      *BMC      `json:"bmc,omitempty"`
	Profile  string    `json:"profile,omitempty"`
	Location *Location `json:"location,omitempty"`
	Pools    []string  `json:"pools,omitempty"`
	// Image is the catalog image the deploy agent writes ("" : the
	// profile's, or the installer's own install).
	Image string `json:"image,omitempty"`
}

// Started names the workflow a request started.
type Started struct {
	Serial     string `json:"serial,omitempty"`
	Name       string `json:"name,omitempty"`
	WorkflowID string `json:"workflowId"`
	RunID      string `json:"runId"`
}

// ServerSummary is one row of the fleet list.
type ServerSummary struct {
	Serial string `json:"serial"`
	State  string `json:"state"`
	Step   string `json:"step"`
	// StepStartedAt is when the server entered its step, when known.
	StepStartedAt *time.Time `json:"stepStartedAt,omitempty"`
	Rack          string     `json:"rack"`
	WorkflowID    string     `json:"workflowId"`
	StartedAt     time.Time  `json:"startedAt"`
}

// ServerList is one page of the fleet.
type ServerList struct {
	Servers       []ServerSummary `json:"servers"`
	NextPageToken string          `json:"nextPageToken"`
}

// Server is one server's lifecycle as the API reports it.
type Server struct {
	Serial         string     `json:"serial"`
	State          string     `json:"state"`
	Step           string     `json:"step"`
	Steps          []Step     `json:"steps"`
	Location       *Location  `json:"location"`
	Attention      *Attention `json:"attention"`
	InstallAttempt int        `json:"installAttempt"`
	WorkflowID     string     `json:"workflowId"`
	RunID          string     `json:"runId"`
	TemporalURL    string     `json:"temporalUrl"`
	Pools          []string   `json:"pools"`
	// StepStartedAt is when the current step began.
	StepStartedAt *time.Time `json:"stepStartedAt,omitempty"`
	// BIOS and RAID are applied versus desired after the last
	// ConfigureBIOS / ConfigureRAID.
	BIOS *BIOSReport `json:"bios,omitempty"`
	RAID *RAIDReport `json:"raid,omitempty"`
	// Deploy is the current image deploy's phases and figures.
	Deploy *DeployStatus `json:"deploy,omitempty"`
	// Hardware is what inspection found, with what the BMC would not give.
	Hardware *Hardware `json:"hardware,omitempty"`
}

// Racked is the racked signal's answer.
type Racked struct {
	Serial   string   `json:"serial"`
	Location Location `json:"location"`
}

// Rack is one rack of the inventory.
type Rack struct {
	Site    string `json:"site"`
	Room    string `json:"room"`
	Name    string `json:"name"`
	HeightU int    `json:"heightU"`
}

// RackList is every rack.
type RackList struct {
	Racks []Rack `json:"racks"`
}

// RackUnit is an occupied unit.
type RackUnit struct {
	Unit   int    `json:"unit"`
	Serial string `json:"serial"`
}

// RackDetail is a rack with its occupied units.
type RackDetail struct {
	Rack
	Units []RackUnit `json:"units"`
}

// VIPBackend is one real server behind a VIP.
type VIPBackend struct {
	Address string `json:"address"`
	Weight  int    `json:"weight,omitempty"`
	State   string `json:"state,omitempty"`
	Serial  string `json:"serial,omitempty"`
}

// NewVIP asks for a VIP.
type NewVIP struct {
	Name     string       `json:"name"`
	Protocol string       `json:"protocol,omitempty"`
	Ports    []int        `json:"ports,omitempty"`
	Exposure string       `json:"exposure,omitempty"`
	Backends []VIPBackend `json:"backends,omitempty"`
	Servers  []string     `json:"servers,omitempty"`
	Clusters int          `json:"clusters,omitempty"`
}

// VIPSummary is one row of the VIP list.
type VIPSummary struct {
	Name             string    `json:"name"`
	Address          string    `json:"address"`
	Exposure         string    `json:"exposure"`
	State            string    `json:"state"`
	RequestedBy      string    `json:"requestedBy"`
	ApprovedBy       string    `json:"approvedBy"`
	AwaitingApproval bool      `json:"awaitingApproval"`
	UpdatedAt        time.Time `json:"updatedAt"`
}

// VIPList is every VIP.
type VIPList struct {
	VIPs []VIPSummary `json:"vips"`
}

// VIP is one VIP's rollout as the API reports it. Placement and backends
// vary with the data plane, so they stay raw and are shown as they come.
type VIP struct {
	Name             string            `json:"name"`
	Address          string            `json:"address"`
	Exposure         string            `json:"exposure"`
	State            string            `json:"state"`
	Protocol         string            `json:"protocol"`
	Ports            []int             `json:"ports"`
	Placement        []json.RawMessage `json:"placement"`
	Backends         []VIPBackend      `json:"backends"`
	Warnings         []string          `json:"warnings"`
	RequestedBy      string            `json:"requestedBy"`
	ApprovedBy       string            `json:"approvedBy"`
	Attention        *Attention        `json:"attention"`
	AwaitingApproval bool              `json:"awaitingApproval"`
	WorkflowID       string            `json:"workflowId"`
	TemporalURL      string            `json:"temporalUrl"`
}

// NewToken asks for an API token.
type NewToken struct {
	Name    string `json:"name"`
	User    string `json:"user,omitempty"`
	Role    string `json:"role"`
	Project string `json:"project,omitempty"`
}

// Token is a token's details (never its secret).
type Token struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	User      string     `json:"user"`
	Role      string     `json:"role"`
	Project   string     `json:"project"`
	CreatedAt time.Time  `json:"createdAt"`
	CreatedBy string     `json:"createdBy"`
	RevokedAt *time.Time `json:"revokedAt"`
}

// TokenCreated carries the new token's secret, shown once.
type TokenCreated struct {
	Token   string `json:"token"`
	Details Token  `json:"details"`
}

// TokenList is every token.
type TokenList struct {
	Tokens []Token `json:"tokens"`
}

// Principal is who a token acts as.
type Principal struct {
	User    string `json:"user"`
	Role    string `json:"role"`
	Project string `json:"project"`
	TokenID string `json:"tokenId"`
}
