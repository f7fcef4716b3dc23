// Package netpoll adapts the gnet v2 event loop to FlowMesh's ports. It owns
// the loops and the connections: read framing (the Handler says how many
// bytes it consumed and how many it needs next, so a large payload is not
// re-parsed on every read), outbound buffering with a per-connection cap
// (a connection that falls behind past it is cut as a slow consumer),
// batched delivery between loops, output held for a barrier that runs once
// per loop turn (BarrierHandler), keepalive PINGs, a connection limit and a
// graceful stop.
//
// It knows no verbs: the frames it writes on its own (keepalive PING, the
// errors for slow and stale connections) are given to it in Config, so the
// FlowMesh port and the RESP port share it.
//
// Threading: every Conn belongs to one loop. Handler methods run on that
// loop; Conn methods marked "loop only" may be called only there. Execute
// and Close are safe from any goroutine.
//
// Imports: gnet, internal/fdlimit, internal/repeatlog and the standard
// library.
package netpoll
