package testimage

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// SeedLabel is the filesystem label cloud-init's NoCloud datasource looks
// for (it accepts it upper or lower case; FAT stores it upper case).
const SeedLabel = "cidata"

// Seed is a NoCloud seed: what the deploy agent writes for a node.
type Seed struct {
	InstanceID string
	Hostname   string
	// MAC of the NIC the network-config configures with DHCP.
	MAC string
	// PhoneHomeURL as the guest reaches it; cloud-init replaces
	// $INSTANCE_ID in it. Empty: no phone_home.
	PhoneHomeURL string
	// SSHAuthorizedKeys for the image's default user (debian).
	SSHAuthorizedKeys []string
}

// Files returns the seed's meta-data, user-data and network-config.
func (s Seed) Files() map[string][]byte {
	var user strings.Builder
	user.WriteString("#cloud-config\n")
	if len(s.SSHAuthorizedKeys) > 0 {
		user.WriteString("ssh_authorized_keys:\n")
		for _, k := range s.SSHAuthorizedKeys {
			fmt.Fprintf(&user, "  - %s\n", strconv.Quote(k))
		}
	}
	if s.PhoneHomeURL != "" {
		fmt.Fprintf(&user, "phone_home:\n  url: %s\n  post: [instance_id, hostname]\n  tries: 10\n", strconv.Quote(s.PhoneHomeURL))
	}
	return map[string][]byte{
		"meta-data": fmt.Appendf(nil, "instance-id: %s\nlocal-hostname: %s\n",
			strconv.Quote(s.InstanceID), strconv.Quote(s.Hostname)),
		"user-data": []byte(user.String()),
		"network-config": fmt.Appendf(nil, `version: 2
ethernets:
  nic0:
    match:
      macaddress: %s
    dhcp4: true
`, strconv.Quote(strings.ToLower(s.MAC))),
	}
}

// WriteSeedImage writes the seed as a 4 MiB FAT filesystem image labelled
// cidata at path, with mtools (no mount, no vfat in the host kernel needed).
// Attached as a second disk, cloud-init finds it.
func WriteSeedImage(ctx context.Context, path string, s Seed) error {
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		return err
	}
	if err := os.Truncate(path, 4<<20); err != nil {
		return err
	}
	return writeSeedFAT(ctx, path, 4<<20/512, s)
}

// AppendSeedPartition grows the raw disk image at path by 8 MiB and adds a
// GPT partition named and labelled cidata holding the seed, the way a
// deploy agent can put the seed on the disk it wrote. The disk must be a
// copy: the cached image must not be modified.
func AppendSeedPartition(ctx context.Context, path string, s Seed) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	const grow = 8 << 20
	if err := os.Truncate(path, fi.Size()+grow); err != nil {
		return err
	}
	// The backup GPT must move to the new end before a partition is added.
	if out, err := exec.CommandContext(ctx, "sfdisk", "--relocate", "gpt-bak-std", path).CombinedOutput(); err != nil {
		return fmt.Errorf("sfdisk --relocate: %v: %s", err, out)
	}
	add := exec.CommandContext(ctx, "sfdisk", "--append", "--quiet", path)
	add.Stdin = strings.NewReader("size=6MiB, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, name=\"" + SeedLabel + "\"\n")
	if out, err := add.CombinedOutput(); err != nil {
		return fmt.Errorf("sfdisk --append: %v: %s", err, out)
	}
	out, err := exec.CommandContext(ctx, "sfdisk", "--dump", path).Output()
	if err != nil {
		return fmt.Errorf("sfdisk --dump: %v", err)
	}
	start, size, err := partitionByName(string(out), SeedLabel)
	if err != nil {
		return err
	}
	return writeSeedFAT(ctx, path+"@@"+strconv.FormatInt(start*512, 10), size, s)
}

// partitionByName finds a partition's start and size (sectors) in sfdisk
// --dump output.
func partitionByName(dump, name string) (start, size int64, err error) {
	for _, line := range strings.Split(dump, "\n") {
		if !strings.Contains(line, `name="`+name+`"`) {
			continue
		}
		_, fields, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		for _, f := range strings.Split(fields, ",") {
			k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			switch k {
			case "start":
				start = n
			case "size":
				size = n
			}
		}
		if start > 0 && size > 0 {
			return start, size, nil
		}
	}
	return 0, 0, fmt.Errorf("no partition named %q in:\n%s", name, dump)
}

// writeSeedFAT formats target (an mtools image spec, optionally with an
// @@offset) as FAT labelled cidata and copies the seed files in.
func writeSeedFAT(ctx context.Context, target string, sectors int64, s Seed) error {
	dir, err := os.MkdirTemp("", "metalflow-seed-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	files := s.Files()
	names := make([]string, 0, len(files))
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
		names = append(names, filepath.Join(dir, name))
	}
	sort.Strings(names)
	if out, err := exec.CommandContext(ctx, "mformat", "-i", target, "-T", strconv.FormatInt(sectors, 10),
		"-h", "64", "-s", "32", "-v", SeedLabel, "::").CombinedOutput(); err != nil {
		return fmt.Errorf("mformat %s: %v: %s", target, err, out)
	}
	args := append([]string{"-i", target}, names...)
	if out, err := exec.CommandContext(ctx, "mcopy", append(args, "::")...).CombinedOutput(); err != nil {
		return fmt.Errorf("mcopy to %s: %v: %s", target, err, out)
	}
	return nil
}
