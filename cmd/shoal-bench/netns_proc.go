package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// nsProc is a child process running in a host's namespace, with its
// stdout and stderr in a log file.
type nsProc struct {
	name    string // for messages: "daemon on p3"
	logPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	exited  time.Time     // set before done is closed
	err     error         // Wait's error, set before done is closed
	stopped sync.Once
}

// startInNS starts prog args in namespace ns (through `ip netns exec`,
// which execs into prog, so the pid is prog's). The child gets its own
// process group, so a Ctrl-C on the terminal reaches only shoal-bench,
// which then stops its children itself; it is killed if shoal-bench dies.
func startInNS(ns, name, logPath string, env []string, prog string, args ...string) (*nsProc, error) {
	f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, prog}, args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &nsProc{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		p.exited, p.err = time.Now(), err
		close(p.done)
	}()
	return p, nil
}

func (p *nsProc) pid() int { return p.cmd.Process.Pid }

// exitedEarly returns an error with the log's tail if the process has
// exited, else nil.
func (p *nsProc) exitedEarly() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited (%v); its log ends with:\n%s", p.name, p.err, p.tail(15))
	default:
		return nil
	}
}

// stop sends SIGTERM, waits up to grace, then SIGKILLs the process group
// and waits. Safe to call more than once; returns nil if the process
// is gone.
func (p *nsProc) stop(grace time.Duration) error {
	p.stopped.Do(func() {
		select {
		case <-p.done:
			return
		default:
		}
		syscall.Kill(p.pid(), syscall.SIGTERM)
		select {
		case <-p.done:
			return
		case <-time.After(grace):
		}
		syscall.Kill(-p.pid(), syscall.SIGKILL)
		<-p.done
	})
	return nil
}

// tail returns the last n lines of the process's log.
func (p *nsProc) tail(n int) string {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

// execInNS runs prog args in namespace ns to completion and returns its
// stdout; the error carries stderr.
func execInNS(ctx context.Context, ns string, env []string, prog string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, prog}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("in %s: %s %s: %w: %s", ns, prog, strings.Join(args, " "), err, bytes.TrimSpace(errb.Bytes()))
	}
	return out.String(), nil
}

// poll calls check every interval until it returns true, returns an
// error, or timeout passes; what names the awaited condition in the
// time-out error. It is for waiting on other processes, which send no
// events to this one.
func poll(ctx context.Context, timeout, interval time.Duration, what string, check func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(interval)
	defer t.Stop()
	var last error
	for {
		ok, err := check()
		if ok {
			return nil
		}
		var fatal *fatalErr
		if errors.As(err, &fatal) {
			return fatal.err
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				if last != nil {
					return fmt.Errorf("timed out after %s waiting for %s (last error: %w)", timeout, what, last)
				}
				return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
			}
			return ctx.Err()
		case <-t.C:
		}
	}
}

// fatalErr ends a poll at once.
type fatalErr struct{ err error }

func (f *fatalErr) Error() string { return f.err.Error() }
