package monitor

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	pb "github.com/flowmesh/flowmesh/monitor/externalscaler"
)

// KEDA's external scaler, served on the gRPC port (--grpc-addr). A
// ScaledObject names its queue or consumer group in the trigger's metadata
// ("queue", or "topic" and "group"); the metric is Recommend's scale_to
// with a target of 1 per replica, so the HPA that KEDA drives lands on the
// recommendation; IsActive is "there is work" (a backlog, or jobs in
// flight), which lets KEDA scale a workload from and to zero.

// Autoscaled is what the scaler needs from the node.
type Autoscaled interface {
	Metered
	Autoscale() []Recommendation
}

type scaler struct {
	pb.UnimplementedExternalScalerServer
	node Autoscaled
	poll time.Duration // StreamIsActive's check interval
}

// GRPCServer is the node's gRPC port: the external scaler and the
// standard health service.
type GRPCServer struct {
	srv    *grpc.Server
	ln     net.Listener
	health *health.Server
}

// ListenGRPC serves the external scaler and grpc.health.v1 on addr.
func ListenGRPC(addr string, node Autoscaled) (*GRPCServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("monitor: gRPC listen on %s: %w", addr, err)
	}
	g := &GRPCServer{srv: grpc.NewServer(), ln: ln, health: health.NewServer()}
	pb.RegisterExternalScalerServer(g.srv, &scaler{node: node, poll: time.Second})
	healthpb.RegisterHealthServer(g.srv, g.health)
	g.health.SetServingStatus("externalscaler.ExternalScaler", healthpb.HealthCheckResponse_SERVING)
	go g.srv.Serve(ln)
	return g, nil
}

// Addr is the bound address.
func (g *GRPCServer) Addr() net.Addr { return g.ln.Addr() }

// Shutdown stops taking calls and ends the streams; it waits for calls
// under way until ctx ends.
func (g *GRPCServer) Shutdown(ctx context.Context) {
	g.health.Shutdown()
	done := make(chan struct{})
	go func() { g.srv.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		g.srv.Stop()
	}
}

// target reads the trigger's metadata.
func target(ref *pb.ScaledObjectRef) (string, error) {
	md := ref.GetScalerMetadata()
	switch {
	case md["queue"] != "":
		return "queue:" + md["queue"], nil
	case md["topic"] != "" && md["group"] != "":
		return "group:" + md["topic"] + "/" + md["group"], nil
	}
	return "", status.Error(codes.InvalidArgument, `scaler metadata must name a "queue", or a "topic" and a "group"`)
}

// metricName is the target as a metric name (letters, digits, dashes).
func metricName(t string) string {
	return "flowmesh-" + strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, t)
}

func (s *scaler) recommendation(t string) (Recommendation, error) {
	for _, r := range s.node.Autoscale() {
		if r.Target == t {
			return r, nil
		}
	}
	return Recommendation{}, status.Errorf(codes.NotFound, "no %s", t)
}

// active reports whether t has work: a backlog or jobs in flight.
func (s *scaler) active(t string) (bool, error) {
	m := s.node.Metrics()
	for _, q := range m.Queues {
		if "queue:"+q.Name == t {
			return q.Ready > 0 || q.InFlight > 0, nil
		}
	}
	for _, g := range m.Groups {
		if "group:"+g.Topic+"/"+g.Group == t {
			return g.Lag > 0, nil
		}
	}
	return false, status.Errorf(codes.NotFound, "no %s", t)
}

func (s *scaler) IsActive(_ context.Context, ref *pb.ScaledObjectRef) (*pb.IsActiveResponse, error) {
	t, err := target(ref)
	if err != nil {
		return nil, err
	}
	ok, err := s.active(t)
	if err != nil {
		return nil, err
	}
	return &pb.IsActiveResponse{Result: ok}, nil
}

// StreamIsActive sends the activity at once and then whenever it changes.
func (s *scaler) StreamIsActive(ref *pb.ScaledObjectRef, st grpc.ServerStreamingServer[pb.IsActiveResponse]) error {
	t, err := target(ref)
	if err != nil {
		return err
	}
	tick := time.NewTicker(s.poll)
	defer tick.Stop()
	first, last := true, false
	for {
		ok, err := s.active(t)
		if err != nil {
			return err
		}
		if first || ok != last {
			if err := st.Send(&pb.IsActiveResponse{Result: ok}); err != nil {
				return err
			}
			first, last = false, ok
		}
		select {
		case <-tick.C:
		case <-st.Context().Done():
			return nil
		}
	}
}

func (s *scaler) GetMetricSpec(_ context.Context, ref *pb.ScaledObjectRef) (*pb.GetMetricSpecResponse, error) {
	t, err := target(ref)
	if err != nil {
		return nil, err
	}
	return &pb.GetMetricSpecResponse{MetricSpecs: []*pb.MetricSpec{{MetricName: metricName(t), TargetSize: 1, TargetSizeFloat: 1}}}, nil
}

func (s *scaler) GetMetrics(_ context.Context, req *pb.GetMetricsRequest) (*pb.GetMetricsResponse, error) {
	t, err := target(req.GetScaledObjectRef())
	if err != nil {
		return nil, err
	}
	r, err := s.recommendation(t)
	if err != nil {
		return nil, err
	}
	return &pb.GetMetricsResponse{MetricValues: []*pb.MetricValue{{MetricName: metricName(t),
		MetricValue: int64(r.ScaleTo), MetricValueFloat: float64(r.ScaleTo)}}}, nil
}
