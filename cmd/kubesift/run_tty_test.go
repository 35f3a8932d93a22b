package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kubesift/kubesift/internal/config"
	"github.com/kubesift/kubesift/internal/testenv"
)

// openPTY returns a pseudo-terminal pair: what is written to tty can be
// read from master, with the line discipline a user's terminal has.
func openPTY(t *testing.T) (master, tty *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		// CI's machines have them: there a missing pty is a failure, not
		// a test quietly gone.
		testenv.Missing(t, fmt.Sprintf("no pseudo-terminals here: %v", err))
	}
	fd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/pts/%d: %v", n, err)
	}
	return master, tty
}

// TestRunProgressOnTerminal runs the sample with stderr on a real
// pseudo-terminal and --progress=auto: the progress line is redrawn in
// place ("\r", erase to end of line), ends with a newline once the run is
// done, and holds the final figures. With stderr not a terminal, auto
// prints no progress line at all.
func TestRunProgressOnTerminal(t *testing.T) {
	total := 0
	for _, n := range evalCounts(t, sampleAuditPath) {
		total += n
	}
	final := fmt.Sprintf("read 40 · published 40 · indexed 40 · alerts %d", total)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	t.Run("terminal", func(t *testing.T) {
		master, tty := openPTY(t)
		defer master.Close()
		// Drain the terminal while the run writes to it: a full pty
		// buffer would block the progress line.
		read := make(chan []byte, 1)
		go func() {
			var b bytes.Buffer
			_, _ = io.Copy(&b, master) // ends with EIO once tty is closed
			read <- b.Bytes()
		}()
		cfg := config.Default()
		var stdout testenv.Buffer
		o := &runOptions{paths: []string{sampleAuditPath}, out: t.TempDir(), progress: "auto", stdout: &stdout, stderr: tty}
		err := runAll(ctx, &cfg, o, slog.New(slog.DiscardHandler))
		tty.Close()
		if err != nil {
			t.Fatal(err)
		}
		var got []byte
		select {
		case got = <-read:
		case <-time.After(10 * time.Second):
			t.Fatal("the terminal did not reach EOF")
		}
		s := string(got)
		i := strings.LastIndex(s, final)
		if i < 0 || !strings.HasSuffix(strings.TrimRight(s[:i], " "), "\r\x1b[K") {
			t.Fatalf("terminal output lacks the final line %q redrawn in place (\\r, erase line):\n%q", final, s)
		}
		// The terminal's line discipline turns the final "\n" into "\r\n".
		if rest := s[i+len(final):]; rest != "\r\n" {
			t.Errorf("after the final progress line: %q, want one newline", rest)
		}
		if strings.Contains(stdout.String(), "\x1b[K") {
			t.Error("terminal control sequences reached stdout")
		}
	})
	t.Run("not a terminal", func(t *testing.T) {
		cfg := config.Default()
		var stdout, stderr testenv.Buffer
		o := &runOptions{paths: []string{sampleAuditPath}, out: t.TempDir(), progress: "auto", stdout: &stdout, stderr: &stderr}
		if err := runAll(ctx, &cfg, o, slog.New(slog.DiscardHandler)); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(stderr.String(), "published") || strings.Contains(stderr.String(), "\x1b[K") {
			t.Errorf("progress line printed to a non-terminal:\n%q", stderr.String())
		}
	})
}
