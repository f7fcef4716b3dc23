// Package dirs removes an engine's per-object directories (a topic's, a
// queue's) without making the caller wait for a large tree to go: the
// directory is renamed out of the way at once and removed in the
// background, and leftovers of a crash are swept at the next start.
//
// Imports: the standard library only.
package dirs
