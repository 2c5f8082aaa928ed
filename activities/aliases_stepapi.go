package activities

// Transitional: the names below moved to a contract package; these
// aliases keep importers compiling until each is switched over.

import "github.com/metalflow/metalflow/workflows/stepapi"

const ErrTypeCloudRejected = stepapi.ErrTypeCloudRejected
const ErrTypeCloudFailed = stepapi.ErrTypeCloudFailed
const ErrTypeCloudTransient = stepapi.ErrTypeCloudTransient
const ErrTypeInvalidPlacement = stepapi.ErrTypeInvalidPlacement
const ErrTypeUnitOccupied = stepapi.ErrTypeUnitOccupied
const ErrTypeNotFound = stepapi.ErrTypeNotFound
const ErrTypeNoSuchVIP = stepapi.ErrTypeNoSuchVIP
const ErrTypeUnknownServer = stepapi.ErrTypeUnknownServer
const ErrTypeNoHostAddress = stepapi.ErrTypeNoHostAddress
const ErrTypePoolExhausted = stepapi.ErrTypePoolExhausted
const ErrTypeNoPool = stepapi.ErrTypeNoPool
const ErrTypeBMCAuth = stepapi.ErrTypeBMCAuth
const ErrTypeBMCUnsupported = stepapi.ErrTypeBMCUnsupported
const ErrTypeBMCRejected = stepapi.ErrTypeBMCRejected
const ErrTypeCredentialMissing = stepapi.ErrTypeCredentialMissing
const ErrTypeInventoryMismatch = stepapi.ErrTypeInventoryMismatch
const ErrTypeUnknownProfile = stepapi.ErrTypeUnknownProfile
const ErrTypeRAIDImpossible = stepapi.ErrTypeRAIDImpossible
const ErrTypeBIOSNotApplied = stepapi.ErrTypeBIOSNotApplied

var NonRetryableErrorTypes = stepapi.NonRetryableErrorTypes
