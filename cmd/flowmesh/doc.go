// Command flowmesh runs a FlowMesh node.
//
//	flowmesh server [--config file.json] [--addr ...] [--http-addr ...] [--data-dir ...] [--check-config]
//	flowmesh dev    [--in-memory] [flags as for server]
//	flowmesh version
//
// Flags override the config file. main only turns flags into a
// server.Config; the node lives in package server.
//
// Imports: server only; it holds no logic of its own.
package main
