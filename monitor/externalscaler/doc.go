// Package externalscaler is generated from externalscaler.proto, KEDA's
// external-scaler contract; monitor implements its server. Regenerate with
// (protoc 3.21 from Debian's protobuf-compiler, protoc-gen-go v1.36.12,
// protoc-gen-go-grpc v1.6.2):
//
//	protoc -I . --go_out=. --go_opt=paths=source_relative \
//	  --go-grpc_out=. --go-grpc_opt=paths=source_relative monitor/externalscaler/externalscaler.proto
//
// Imports: protobuf and gRPC.
package externalscaler
