package conf

import (
	"encoding/json"
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"7d": 7 * 24 * time.Hour, "90s": 90 * time.Second, "0s": 0} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "-1s", "xd", "1y"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) accepted", bad)
		}
	}
	var d Duration
	if err := json.Unmarshal([]byte(`"2d"`), &d); err != nil || time.Duration(d) != 48*time.Hour {
		t.Fatalf("unmarshal: %v %v", d, err)
	}
	if b, _ := json.Marshal(Duration(time.Hour)); string(b) != `"1h0m0s"` {
		t.Fatalf("marshal: %s", b)
	}
}

func TestValidName(t *testing.T) {
	for name, ok := range map[string]bool{"orders.events": true, "a_b-C9": true, "": false, ".hidden": false,
		"a/b": false, "..": false, "a b": false, string(make([]byte, 201)): false} {
		if ValidName(name) != ok {
			t.Errorf("ValidName(%q) = %v", name, !ok)
		}
	}
}
