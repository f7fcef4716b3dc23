// Package fdlimit tells how close the process is to its open-file limit,
// so that connections and log files stop short of it: gnet's acceptor
// treats a failed accept(2) (EMFILE) as fatal and stops the whole port,
// so the last descriptors must stay free for it.
//
// Imports: the standard library only.
package fdlimit
