// Package repeatlog logs a failure that repeats (every tick of a
// background loop, every batch of a queue whose store is failing) when it
// first comes and when its text changes, and otherwise once per Every with
// how often it came meanwhile, so a sticky error does not fill the log
// with hundreds of lines a second.
//
// Imports: the standard library only.
package repeatlog
