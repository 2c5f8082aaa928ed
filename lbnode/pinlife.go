package lbnode

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// ShortLivedPins says why pins under pinRoot will not outlive this process,
// or "" when they will or that cannot be told: it only explains, so it
// never stops a command.
//
// A bpf filesystem lasts as long as a mount namespace holds it, and `ip
// netns exec` runs its command in a mount namespace of its own with a fresh
// /sys: a bpf filesystem mounted at /sys/fs/bpf there is that command's
// alone. When it exits, the pins go, and a pinned XDP program with them;
// another `ip netns exec` never sees them. Pins are safe when their
// filesystem is also mounted in the host's mount namespace (init's; where
// init cannot be inspected, the parent's, which `ip netns exec` does not
// share with its command).
func ShortLivedPins(pinRoot string) string {
	dir, err := existingPart(pinRoot)
	if err != nil {
		return ""
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return ""
	}
	self, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return ""
	}
	for _, pid := range []int{1, os.Getppid()} {
		host, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid))
		if err != nil {
			continue
		}
		if host == self {
			return ""
		}
		if there, err := mountedIn(pid, st.Dev); err != nil || there {
			return ""
		}
		return fmt.Sprintf("%s is on a bpf filesystem mounted only in this process's own mount namespace "+
			"(`ip netns exec` gives each command one, with a /sys of its own), which ends when the process does", pinRoot)
	}
	return ""
}

// mountedIn says whether the filesystem of device dev is mounted in the
// mount namespace of process pid.
func mountedIn(pid int, dev uint64) (bool, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		return false, err
	}
	defer f.Close()
	want := fmt.Sprintf("%d:%d", unix.Major(dev), unix.Minor(dev))
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// "36 35 0:42 / /sys/fs/bpf rw,nosuid - bpf bpf rw,mode=700": the
		// third field is the st_dev of files on that mount.
		if fields := strings.Fields(sc.Text()); len(fields) > 2 && fields[2] == want {
			return true, nil
		}
	}
	return false, sc.Err()
}
