package stepapi

// Error types of the cloud steps; neither is retried by Temporal.
const (
	// ErrTypeCloudRejected: Ironic or Nova refused the request (invalid
	// input, a MAC on another node, a node in a state metalflow must not
	// touch). Someone has to fix the records first.
	ErrTypeCloudRejected = "CloudRejected"
	// ErrTypeCloudFailed: Ironic accepted a transition and it failed; the
	// message carries Ironic's last_error (e.g. sushy could not reach the
	// BMC).
	ErrTypeCloudFailed = "CloudFailed"
)

// ErrTypeCloudTransient marks Ironic or Nova being down, overloaded or busy
// with the node. It is retried with backoff like any unlisted type; the
// type only makes the reason readable in the Web UI's pending activity.
const ErrTypeCloudTransient = "CloudTransient"

// Error types workflows branch on. An activity failing with one of these is
// not retried: no retry can fix it.
const (
	ErrTypeInvalidPlacement = "InvalidPlacement"
	ErrTypeUnitOccupied     = "UnitOccupied"
	ErrTypeNotFound         = "NotFound"
)

// ErrTypeNoSuchVIP is a pool naming a VIP that does not exist: retrying
// does not create it.
const ErrTypeNoSuchVIP = "NoSuchVIP"

// Error types of the load-balancing activities; none is worth a retry.
const (
	ErrTypeUnknownServer = "UnknownServer"
	ErrTypeNoHostAddress = "NoHostAddress"
	ErrTypePoolExhausted = "PoolExhausted"
	ErrTypeNoPool        = "NoAddressPool"
)

// More error types workflows branch on; none is retried by Temporal.
const (
	ErrTypeBMCAuth           = "BMCAuth"
	ErrTypeBMCUnsupported    = "BMCUnsupported"
	ErrTypeBMCRejected       = "BMCRejected"
	ErrTypeCredentialMissing = "CredentialMissing"
	ErrTypeInventoryMismatch = "InventoryMismatch"
	// ErrTypeInventoryIncomplete: what the BMC would not give leaves open
	// whether the server meets its profile.
	ErrTypeInventoryIncomplete = "InventoryIncomplete"
	ErrTypeUnknownProfile      = "UnknownProfile"
	ErrTypeRAIDImpossible      = "RAIDImpossible"
	ErrTypeBIOSNotApplied      = "BIOSNotApplied"
	// ErrTypeBMCOutsideSite: the BMC address is outside the BMC networks of
	// the site the server is racked in; staff retry with the right one.
	ErrTypeBMCOutsideSite = "BMCOutsideSite"
)

// NonRetryableErrorTypes lists the errors that need a human, for activity
// retry policies: everything else is retried with backoff.
func NonRetryableErrorTypes() []string {
	return []string{
		ErrTypeInvalidPlacement, ErrTypeUnitOccupied, ErrTypeNotFound,
		ErrTypeBMCAuth, ErrTypeBMCUnsupported, ErrTypeBMCRejected, ErrTypeCredentialMissing,
		ErrTypeInventoryMismatch, ErrTypeInventoryIncomplete, ErrTypeUnknownProfile, ErrTypeRAIDImpossible, ErrTypeBIOSNotApplied, ErrTypeBMCOutsideSite,
		ErrTypeCloudRejected, ErrTypeCloudFailed, ErrTypeNoSuchVIP,
	}
}
