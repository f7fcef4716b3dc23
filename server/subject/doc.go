// Package subject validates NATS-style subjects and routes them: a trie of
// subscriptions with `*` (one token) and `>` (one or more trailing tokens)
// wildcards, and a bounded cache of match results, so the publish path costs
// a map lookup in the common case.
//
// A List is safe for concurrent use: publishes on every event loop match
// while subscriptions change. Results are shared and must not be modified.
//
// Imports: the standard library only.
package subject
