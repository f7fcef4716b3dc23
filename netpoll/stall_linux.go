//go:build linux

package netpoll

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The event masks gnet's epoll poller registers (pkg/netpoll/defs_poller_epoll.go);
// the event data is the descriptor itself, so a MOD needs nothing else.
const (
	gnetReadEvents  = unix.EPOLLIN | unix.EPOLLPRI
	gnetWriteEvents = unix.EPOLLOUT
)

// pauseRead takes c's socket out of the loop's read set. Loop only.
func (l *loop) pauseRead(c *Conn) bool {
	if l.epfd == 0 {
		l.epfd = findEpoll(c.gc.Fd())
		if l.epfd < 0 {
			l.s.cfg.Logger.Warn("netpoll: loop epoll descriptor not found; producer stall disabled on this loop")
		}
	}
	if l.epfd < 0 {
		return false
	}
	var ev uint32
	if c.gc.OutboundBuffered() > 0 {
		ev = gnetWriteEvents // gnet is still draining c's own output
	}
	fd := c.gc.Fd()
	return unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, fd, &unix.EpollEvent{Fd: int32(fd), Events: ev}) == nil
}

// resumeRead puts c's socket back as gnet would have it. Loop only.
func (l *loop) resumeRead(c *Conn) {
	var ev uint32 = gnetReadEvents
	if c.gc.OutboundBuffered() > 0 {
		ev |= gnetWriteEvents
	}
	fd := c.gc.Fd()
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, fd, &unix.EpollEvent{Fd: int32(fd), Events: ev}); err != nil {
		l.s.cfg.Logger.Error("netpoll: resume reading", "conn", c.id, "err", err)
	}
}

// findEpoll returns the epoll descriptor of this process that watches fd,
// read from /proc/self/fdinfo, or -1. A connection is registered in exactly
// one epoll set: its own loop's.
func findEpoll(fd int) int {
	entries, err := os.ReadDir("/proc/self/fdinfo")
	if err != nil {
		return -1
	}
	want := fmt.Sprintf("tfd: %8d ", fd)
	wantLoose := "tfd: " + strconv.Itoa(fd) + " "
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil || n == fd {
			continue
		}
		if link, _ := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); link != "anon_inode:[eventpoll]" {
			continue
		}
		f, err := os.Open(filepath.Join("/proc/self/fdinfo", e.Name()))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		found := false
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, want) || strings.HasPrefix(line, wantLoose) {
				found = true
				break
			}
		}
		f.Close()
		if found {
			return n
		}
	}
	return -1
}
