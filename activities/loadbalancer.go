package activities

// Activities that make a server a backend of a VIP and take it out again.
// They run on the lifecycle worker with a Temporal client (package
// workers), because they talk to the VIP's workflow by update.
const (
	JoinLoadBalancerName  = "JoinLoadBalancer"
	LeaveLoadBalancerName = "LeaveLoadBalancer"
)

// LoadBalancerMembershipInput names a server and one VIP.
type LoadBalancerMembershipInput struct {
	Serial string `json:"serial"`
	VIP    string `json:"vip"`
	Actor  string `json:"actor,omitempty"`
}

// ErrTypeNoSuchVIP is a pool naming a VIP that does not exist: retrying
// does not create it.
const ErrTypeNoSuchVIP = "NoSuchVIP"
