package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// WorkerEnv is set to "1" in the environment of every worker process the
// bench starts, so a program can tell it should call ServeWorker.
const WorkerEnv = "ROOMCAST_BENCH_WORKER"

// handle is the coordinator's end of one worker, in this process or in a
// child process. send and close are called from the coordinator only.
type handle struct {
	cmds      chan command
	closeOnce sync.Once
	done      chan struct{} // closed when the worker has ended
	kill      func()        // ends a worker that does not end by itself
}

func (h *handle) send(c command) {
	select {
	case h.cmds <- c:
	case <-h.done:
	}
}

// close ends the worker's commands, which makes a worker that has not
// finished abort, and waits a little for it.
func (h *handle) close() {
	h.closeOnce.Do(func() { close(h.cmds) })
	select {
	case <-h.done:
	case <-time.After(10 * time.Second):
		h.kill()
		<-h.done
	}
}

// startLocal runs a worker in this process.
func startLocal(ctx context.Context, p plan, post func(event)) *handle {
	h := &handle{cmds: make(chan command, 4), done: make(chan struct{}), kill: func() {}}
	go func() {
		defer close(h.done)
		runWorker(ctx, p, h.cmds, func(ev event) {
			ev.Worker = p.Worker
			post(ev)
		})
	}()
	return h
}

// startProc runs a worker in a child process: cfg.WorkerCommand, or this
// executable with "-worker". The child has its own process group, so an
// interrupt at the terminal reaches only the coordinator, which stops the
// workers in order.
func startProc(p plan, post func(event)) (*handle, error) {
	argv := p.Config.WorkerCommand
	if len(argv) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("cannot find this executable: %w", err)
		}
		argv = []string{exe, "-worker"}
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), WorkerEnv+"=1")
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("cannot make worker stdin: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("cannot make worker stdout: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("cannot start %s: %w", argv[0], err)
	}
	h := &handle{cmds: make(chan command, 4), done: make(chan struct{}),
		kill: func() { _ = cmd.Process.Kill() }}
	go writeCommands(stdin, p, h.cmds)
	go func() {
		defer close(h.done)
		readEvents(stdout, p.Worker, post)
		_ = cmd.Wait()
	}()
	return h, nil
}

// writeCommands sends the plan, then each command, as JSON lines; it closes
// the worker's stdin when cmds ends.
func writeCommands(w io.WriteCloser, p plan, cmds <-chan command) {
	defer w.Close()
	enc := json.NewEncoder(w)
	if enc.Encode(p) != nil {
		return
	}
	for c := range cmds {
		if enc.Encode(c) != nil {
			return
		}
	}
}

// readEvents posts the worker's events until it ends. A worker that ends
// without a result is an error.
func readEvents(r io.Reader, worker int, post func(event)) {
	dec := json.NewDecoder(r)
	for {
		var ev event
		if err := dec.Decode(&ev); err != nil {
			if !errors.Is(err, io.EOF) {
				err = fmt.Errorf("bad output: %w", err)
			}
			post(event{Kind: evError, Worker: worker, Error: fmt.Sprintf("exited before its result (%v)", err)})
			return
		}
		ev.Worker = worker
		post(ev)
		if ev.Kind == evResult || ev.Kind == evError {
			return
		}
	}
}

// ServeWorker is the body of a worker process: it reads the plan and the
// commands as JSON lines from in, runs its share of the load, and writes
// its events as JSON lines to out. It returns when it has written its
// result, or when in ends first.
func ServeWorker(in io.Reader, out io.Writer) error {
	dec := json.NewDecoder(in)
	var p plan
	if err := dec.Decode(&p); err != nil {
		return fmt.Errorf("cannot read the worker plan: %w", err)
	}
	cmds := make(chan command)
	go func() {
		defer close(cmds)
		for {
			var c command
			if dec.Decode(&c) != nil {
				return
			}
			cmds <- c
		}
	}()
	var mu sync.Mutex
	enc := json.NewEncoder(out)
	var werr error
	runWorker(context.Background(), p, cmds, func(ev event) {
		ev.Worker = p.Worker
		mu.Lock()
		defer mu.Unlock()
		if err := enc.Encode(ev); err != nil && werr == nil {
			werr = fmt.Errorf("cannot write event: %w", err)
		}
	})
	mu.Lock()
	defer mu.Unlock()
	return werr
}
