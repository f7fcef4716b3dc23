// Package dirs locks, creates and removes the node's directories. Lock
// keeps a second node off a data directory in use. MkdirAll makes
// a new directory's name durable (its parent is fsynced), so a crash
// cannot lose a log whose files were fsynced. Discard removes an engine's
// per-object directory (a topic's, a queue's) without making the caller
// wait for a large tree to go: the directory is renamed out of the way at
// once and removed in the background, and leftovers of a crash are swept
// at the next start. Deleting lets an engine make a re-creation of a name
// wait while the name's deletion is under way.
//
// Imports: the standard library only.
package dirs
