package dirs

import "sync"

// Deleting is the set of names (topics, queues) whose deletion is under
// way. An engine keeps one beside its registry, guarded by the registry's
// lock: a creation of a name waits while the name is in the set, or the
// deletion would discard the new directory and records with the old ones
// (a write or an enqueue auto-creates the name it is given).
type Deleting map[string]chan struct{}

// Add marks name as being deleted; mu, the registry's lock, is held. It
// returns the function that ends the mark once the deletion is done,
// called without mu held (it takes it).
func (d Deleting) Add(mu sync.Locker, name string) (done func()) {
	gone := make(chan struct{})
	d[name] = gone
	return func() {
		mu.Lock()
		delete(d, name)
		mu.Unlock()
		close(gone)
	}
}

// Wait returns once name is not being deleted. mu is held on entry and
// on return, released while Wait waits.
func (d Deleting) Wait(mu sync.Locker, name string) {
	for {
		gone, ok := d[name]
		if !ok {
			return
		}
		mu.Unlock()
		<-gone
		mu.Lock()
	}
}
