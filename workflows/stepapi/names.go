package stepapi

import "fmt"

// IsName accepts what vendors print on asset labels and what data centers
// call their sites and racks: letters, digits and '.', '_', '-', starting with
// a letter or digit. It also keeps the value safe inside workflow IDs,
// search-attribute queries and URLs.
func IsName(s string, maxLen int) bool {
	if s == "" || len(s) > maxLen {
		return false
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case i > 0 && (r == '.' || r == '_' || r == '-'):
		default:
			return false
		}
	}
	return true
}

// MaxSerialLength bounds serials; the longest real vendor serials are ~30.
const MaxSerialLength = 64

// ValidateSerial says why a serial number cannot be used, or nil.
func ValidateSerial(serial string) error {
	switch {
	case serial == "":
		return fmt.Errorf("serial is required")
	case len(serial) > MaxSerialLength:
		return fmt.Errorf("serial is %d characters long; at most %d are allowed", len(serial), MaxSerialLength)
	case !IsName(serial, MaxSerialLength):
		return fmt.Errorf("serial %q may contain only letters, digits, '.', '_' and '-', and must start with a letter or digit", serial)
	}
	return nil
}

// MaxNameLength bounds site, room and rack names.
const MaxNameLength = 32
