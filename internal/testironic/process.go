package testironic

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// stopGrace is how long a service gets to shut down on SIGTERM (Ironic
// takes ~5 s, releasing its node locks) before SIGKILL.
const stopGrace = 15 * time.Second

// process is one service started for tests, in its own process group.
type process struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// startProcess runs cmd with its output appended to dir/logName.
func startProcess(dir, logName string, cmd *exec.Cmd) (*process, error) {
	out, err := os.OpenFile(filepath.Join(dir, logName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group so stopping reaches any worker it forks; and
	// killed with the test binary so a crashed test leaves nothing behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	return p, nil
}

func (p *process) running() bool {
	if p == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// exitedErr says whether the process has died, for start-up loops.
func (p *process) exitedErr(name string) error {
	if p.running() {
		return nil
	}
	return fmt.Errorf("%s exited during start-up: %v", name, p.cmd.ProcessState)
}

// signal sends sig to the process group.
func (p *process) signal(sig syscall.Signal) {
	if p.running() {
		_ = syscall.Kill(-p.cmd.Process.Pid, sig)
	}
}

// terminate sends SIGTERM to the process group by PID, then SIGKILL if it
// lingers past stopGrace.
func (p *process) terminate() {
	if !p.running() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	// A frozen (SIGSTOPped) process handles SIGTERM only once continued.
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGCONT)
	select {
	case <-p.exited:
	case <-time.After(stopGrace):
		p.kill()
	}
}

func (p *process) kill() {
	if p == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.exited
}

// tail returns the last n lines of the named files in dir, for failure
// messages.
func tail(dir string, n int, names ...string) string {
	var b []byte
	for _, name := range names {
		data, _ := os.ReadFile(filepath.Join(dir, name))
		b = append(b, data...)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
