// Package fdtest runs a process out of file descriptors for a test: the
// port tests make gnet's accept(2) fail with EMFILE this way.
//
// Imports: the standard library only (testing).
package fdtest
