// Package server is the FlowMesh node and its composition root: it owns the
// configuration, the protocol port (through netpoll), the per-connection
// sessions, the one verb table through which every command reaches its
// engine, the ordered reply queue, and NATS core publish/subscribe.
//
// Data flows one way: netpoll hands a connection's bytes to its session,
// the protocol parser turns them into frames, dispatch sends each frame to
// its handler (core pub/sub here, engine verbs through Handle), and the
// handler's answer goes back through the session's reply queue in arrival
// order.
//
// Threading: a session and everything it holds belong to its connection's
// event loop. Handlers run there and must not block; work that waits on the
// disk or another goroutine takes a Pending (Call.Defer) and completes it
// from anywhere. The subject list is shared by all loops and locks itself.
//
// Imports: netpoll, protocol, server/subject, and the engines as they come.
// Nothing imports server except cmd/flowmesh.
package server
