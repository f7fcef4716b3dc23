package flowmesh

// PendingCalls is how many calls wait for their reply: tests wait on it
// to know a call was made before they close the Conn.
func PendingCalls(c *Conn) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}

// Subscriptions is how many subscriptions the Conn keeps (and would
// subscribe again after a reconnect).
func Subscriptions(c *Conn) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.subs)
}
