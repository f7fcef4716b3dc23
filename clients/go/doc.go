// Package flowmesh is the Go SDK of FlowMesh: a connection that pipelines
// calls from many goroutines on one TCP connection, reconnects with backoff
// and subscribes again, and takes a context on every call.
//
//	fm, err := flowmesh.Connect(ctx, "nats://127.0.0.1:4222", flowmesh.Name("billing"))
//	sub, err := fm.Subscribe(ctx, "orders.>")
//	for msg, err := range sub.Messages(ctx) { ... }
//	err = fm.Publish(ctx, "orders.eu.42", data, flowmesh.WithHeader(h))
//	reply, err := fm.Request(ctx, "svc.price", data)
//
// The KV, queue and stream APIs build on the same call path: every engine
// command gets exactly one reply frame, and replies come back in the order
// the commands were sent, so the SDK matches them with a FIFO.
//
// Delivery semantics: core publish/subscribe is at most once, as in NATS. A
// call whose command may have reached the server before the connection
// dropped fails with ErrConnectionLost: its outcome is unknown. Commands
// still buffered at the drop are sent after the reconnect.
//
// Imports: protocol (the shared wire encoders and parser) and the standard
// library, nothing of the server.
package flowmesh
