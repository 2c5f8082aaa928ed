package lbnode

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
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
// alone (and a shell's it started there). When they exit, the pins go, and
// a pinned XDP program with them; another `ip netns exec` never sees them.
// Pins last when their filesystem is also mounted in the mount namespace
// this one was made from: that of the nearest ancestor process outside it.
// (init's cannot stand in for it: some hosts deny reading it even to root.)
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
	// The bound only guards against a pid reused while the chain is read.
	for pid, hops := os.Getppid(), 0; pid > 0 && hops < 1024; pid, hops = parentOf(pid), hops+1 {
		ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid))
		if err != nil || ns == self {
			continue
		}
		if there, err := mountedIn(pid, st.Dev); err != nil || there {
			return ""
		}
		return fmt.Sprintf("%s is on a bpf filesystem mounted only in this command's own mount namespace, "+
			"as `ip netns exec` gives each command (with a /sys of its own), which ends when the last process in it exits", pinRoot)
	}
	return ""
}

// parentOf is the parent of process pid, or 0 when that cannot be read.
func parentOf(pid int) int {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// "pid (comm) state ppid ...": comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 2 {
		return 0
	}
	ppid, err := strconv.Atoi(fields[1])
	if err != nil {
		return 0
	}
	return ppid
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
