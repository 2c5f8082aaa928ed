package profiles

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/metalflow/metalflow/api/boot/agentapi"
)

// What metalflow's deploy agent gives the installed OS comes from the
// profile and from the server's registration; both are checked by the
// rules here, so a profile file and an API request are refused alike, and
// before the agent would fail on them at the end of an install.

// MaxUserDataBytes bounds a user-data document: cloud-config for a first
// boot, not a payload (the NoCloud seed partition is small).
const MaxUserDataBytes = 64 << 10

// MaxSSHAuthorizedKeys bounds the keys one server gets.
const MaxSSHAuthorizedKeys = 100

// maxSSHKeyBytes is far above a 16384-bit RSA key.
const maxSSHKeyBytes = 16 << 10

// ErrReservedUserData means user-data sets a key metalflow writes itself;
// the document is well formed, but cannot be right.
var ErrReservedUserData = errors.New("user-data sets a key metalflow writes")

// reservedUserDataKeys are what the deploy agent's seed writes: the
// server's hostname, the keys given apart, and the phone-home that tells
// the lifecycle the OS is up. A user-data copy would fight them.
func reservedUserDataKeys() []string {
	return []string{"hostname", "phone_home", "ssh_authorized_keys"}
}

// sshKeyTypes are the public key types OpenSSH accepts in authorized_keys
// (DSA is gone from OpenSSH).
func sshKeyTypes() []string {
	return []string{
		"ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
		"sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
	}
}

// ValidateSSHAuthorizedKey says why key is not one public key as an
// authorized_keys line has it: "<type> <base64> [comment]", whose base64
// holds a key of that type. Options (command=, from=…) are refused: they
// would hand whoever writes them a say in how the server is reached.
func ValidateSSHAuthorizedKey(key string) error {
	if len(key) > maxSSHKeyBytes {
		return fmt.Errorf("SSH key of %d bytes is longer than any public key", len(key))
	}
	if strings.ContainsAny(key, "\r\n\x00") {
		return errors.New("an SSH key is one line: no newlines")
	}
	fields := strings.Fields(key)
	if len(fields) == 0 {
		return errors.New("empty SSH key")
	}
	typ := fields[0]
	if !slices.Contains(sshKeyTypes(), typ) {
		if strings.ContainsAny(typ, "=,\"") {
			return fmt.Errorf("SSH key %.40q starts with options: give the public key alone (type, base64, comment)", key)
		}
		return fmt.Errorf("SSH key type %.40q is not one of %s", typ, strings.Join(sshKeyTypes(), ", "))
	}
	if len(fields) < 2 {
		return fmt.Errorf("%s key without its base64 data", typ)
	}
	blob, err := base64.StdEncoding.DecodeString(fields[1])
	if err != nil {
		return fmt.Errorf("%s key data is not base64: %v", typ, err)
	}
	// The wire format is length-prefixed strings, the first the type
	// again: a key pasted with the wrong label, or cut short, shows here.
	var parts []string
	for rest := blob; len(rest) > 0; {
		if len(rest) < 4 || uint64(binary.BigEndian.Uint32(rest)) > uint64(len(rest)-4) {
			return fmt.Errorf("%s key data is cut short", typ)
		}
		n := binary.BigEndian.Uint32(rest)
		parts = append(parts, string(rest[4:4+n]))
		rest = rest[4+n:]
	}
	if len(parts) < 2 || parts[0] != typ {
		return fmt.Errorf("%s key data does not hold a %s key", typ, typ)
	}
	return nil
}

// ValidateSSHAuthorizedKeys checks every key, naming the first bad one by
// its index ("[2]: …"); the caller prefixes the field's name.
func ValidateSSHAuthorizedKeys(keys []string) error {
	if len(keys) > MaxSSHAuthorizedKeys {
		return fmt.Errorf(": %d SSH keys, at most %d", len(keys), MaxSSHAuthorizedKeys)
	}
	for i, k := range keys {
		if err := ValidateSSHAuthorizedKey(k); err != nil {
			return fmt.Errorf("[%d]: %w", i, err)
		}
	}
	return nil
}

// cloudConfigHeader is the first line cloud-init needs to read user-data
// as cloud-config rather than a script.
const cloudConfigHeader = "#cloud-config"

// ValidateUserData says why doc is not user-data the deploy agent can merge
// into the seed it writes: one #cloud-config YAML document, a mapping at the
// top, at most MaxUserDataBytes, not setting a key metalflow writes
// (ErrReservedUserData). "" is no user-data, and fine.
func ValidateUserData(doc string) error {
	if doc == "" {
		return nil
	}
	if len(doc) > MaxUserDataBytes {
		return fmt.Errorf("user-data of %d bytes is larger than %d", len(doc), MaxUserDataBytes)
	}
	first, _, _ := strings.Cut(doc, "\n")
	if strings.TrimRight(first, " \t\r") != cloudConfigHeader {
		return fmt.Errorf("user-data must be cloud-config: its first line must be %q", cloudConfigHeader)
	}
	dec := yaml.NewDecoder(strings.NewReader(doc))
	var top map[string]any
	if err := dec.Decode(&top); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("user-data is not a YAML mapping: %v", err)
	}
	var more any
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		return errors.New("user-data must be one YAML document")
	}
	var reserved []string
	for _, k := range reservedUserDataKeys() {
		if _, ok := top[k]; ok {
			reserved = append(reserved, k)
		}
	}
	if len(reserved) > 0 {
		return fmt.Errorf("%w: %s (metalflow sets the hostname, the SSH keys given apart, and the phone-home)",
			ErrReservedUserData, strings.Join(reserved, ", "))
	}
	return nil
}

// UserDataBody is doc without its #cloud-config line: what the deploy
// agent merges into the cloud-config it writes.
func UserDataBody(doc string) string {
	first, rest, _ := strings.Cut(doc, "\n")
	if strings.TrimRight(first, " \t\r") == cloudConfigHeader {
		return rest
	}
	return doc
}

// RootDeviceHints reads Ironic-style root-device hints, as a profile's
// root_device names them, into the deploy agent's: every key must be one
// Ironic knows, size a GiB expression, rotational a boolean.
func RootDeviceHints(m map[string]string) (agentapi.RootDeviceHints, error) {
	var h agentapi.RootDeviceHints
	strs := map[string]*string{
		"name": &h.Name, "model": &h.Model, "vendor": &h.Vendor, "serial": &h.Serial,
		"wwn": &h.WWN, "wwn_with_extension": &h.WWNWithExtension, "wwn_vendor_extension": &h.WWNVendorExtension,
		"hctl": &h.HCTL, "by_path": &h.ByPath,
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var problems []string
	for _, k := range keys {
		v := strings.TrimSpace(m[k])
		if v == "" {
			problems = append(problems, fmt.Sprintf("root_device.%s is empty", k))
			continue
		}
		switch k {
		case "size":
			if err := checkSizeHint(v); err != nil {
				problems = append(problems, fmt.Sprintf("root_device.size: %v", err))
			}
			h.Size = agentapi.SizeHint(v)
		case "rotational":
			b, err := strconv.ParseBool(v)
			if err != nil {
				problems = append(problems, fmt.Sprintf("root_device.rotational must be true or false, got %q", v))
			}
			h.Rotational = &b
		default:
			p, ok := strs[k]
			if !ok {
				problems = append(problems, fmt.Sprintf("root_device.%s is not a root-device hint (known: by_path, hctl, model, name, rotational, serial, size, vendor, wwn, wwn_vendor_extension, wwn_with_extension)", k))
				continue
			}
			*p = v
		}
	}
	if len(problems) > 0 {
		return agentapi.RootDeviceHints{}, errors.New(strings.Join(problems, "; "))
	}
	return h, nil
}

// checkSizeHint accepts what Ironic does for size: whole GiB, alone or
// after one of == != >= > <= < = (Ironic's "=" meaning >=), or
// alternatives "<or> 60 <or> 120".
func checkSizeHint(v string) error {
	alts := []string{v}
	if rest, ok := strings.CutPrefix(v, "<or>"); ok {
		alts = strings.Split(rest, "<or>")
	}
	for _, a := range alts {
		a = strings.TrimSpace(a)
		for _, op := range []string{"==", "!=", ">=", "<=", ">", "<", "="} {
			if rest, ok := strings.CutPrefix(a, op); ok {
				a = strings.TrimSpace(rest)
				break
			}
		}
		if _, err := strconv.ParseUint(a, 10, 63); err != nil {
			return fmt.Errorf("%q is not whole GiB with an optional operator (e.g. \">= 60\")", v)
		}
	}
	return nil
}
