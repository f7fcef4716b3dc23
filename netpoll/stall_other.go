//go:build !linux

package netpoll

// Producer stall needs the loop's epoll descriptor; elsewhere it is off.
func (l *loop) pauseRead(*Conn) bool { l.epfd = -1; return false }
func (l *loop) resumeRead(*Conn)     {}
