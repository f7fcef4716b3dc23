package server

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/flowmesh/flowmesh/monitor"
	pb "github.com/flowmesh/flowmesh/monitor/externalscaler"
)

// TestExternalScaler calls KEDA's external-scaler service over gRPC the
// way KEDA does: IsActive, StreamIsActive, GetMetricSpec and GetMetrics
// for a queue with a backlog under a policy, and errors for a trigger that
// names nothing or an unknown queue.
func TestExternalScaler(t *testing.T) {
	pol := monitor.ScalePolicy{Queue: "jobs", MinWorkers: 0, MaxWorkers: 5, BacklogPerWorker: 10}
	s := startServer(t, Config{GRPCAddr: "127.0.0.1:0", Autoscale: []monitor.ScalePolicy{pol}})
	w := dial(t, s)
	w.send("QCREATE jobs\r\nQCREATE idle\r\n")
	w.expect("+OK", "+OK")
	for i := 0; i < 25; i++ {
		w.send("QPUT jobs 1\r\nx\r\n")
		w.line()
	}
	cc, err := grpc.NewClient(s.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := pb.NewExternalScalerClient(cc)
	ref := func(md map[string]string) *pb.ScaledObjectRef {
		return &pb.ScaledObjectRef{Name: "workers", Namespace: "default", ScalerMetadata: md}
	}
	jobs, idle := ref(map[string]string{"queue": "jobs"}), ref(map[string]string{"queue": "idle"})

	if r, err := c.IsActive(ctx, jobs); err != nil || !r.Result {
		t.Fatalf("IsActive(jobs) = %v %v", r, err)
	}
	if r, err := c.IsActive(ctx, idle); err != nil || r.Result {
		t.Fatalf("IsActive(idle) = %v %v", r, err)
	}
	spec, err := c.GetMetricSpec(ctx, jobs)
	if err != nil || len(spec.MetricSpecs) != 1 || spec.MetricSpecs[0].TargetSize != 1 || spec.MetricSpecs[0].MetricName != "flowmesh-queue-jobs" {
		t.Fatalf("GetMetricSpec = %v %v", spec, err)
	}
	m, err := c.GetMetrics(ctx, &pb.GetMetricsRequest{ScaledObjectRef: jobs, MetricName: "flowmesh-queue-jobs"})
	if err != nil || len(m.MetricValues) != 1 || m.MetricValues[0].MetricValue != 3 { // 25 ready at 10 per worker
		t.Fatalf("GetMetrics = %v %v", m, err)
	}
	st, err := c.StreamIsActive(ctx, idle)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := st.Recv(); err != nil || r.Result {
		t.Fatalf("StreamIsActive first = %v %v", r, err)
	}
	w.send("QPUT idle 1\r\nx\r\n")
	w.line()
	if r, err := st.Recv(); err != nil || !r.Result {
		t.Fatalf("StreamIsActive after an enqueue = %v %v", r, err)
	}
	if _, err := c.IsActive(ctx, ref(nil)); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("no target: %v", err)
	}
	if _, err := c.GetMetrics(ctx, &pb.GetMetricsRequest{ScaledObjectRef: ref(map[string]string{"queue": "nope"})}); status.Code(err) != codes.NotFound {
		t.Fatalf("unknown queue: %v", err)
	}
	h, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: "externalscaler.ExternalScaler"})
	if err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", h, err)
	}
}
