package flowmesh_test

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The layering of docs/architecture.md, enforced: for each FlowMesh package,
// the FlowMesh packages it may import (directly or not). A package missing
// from this table fails the test until it is placed in the layering.
var allowedDeps = map[string][]string{
	"protocol":                {},
	"server/subject":          {},
	"netpoll":                 {"internal/fdlimit", "internal/repeatlog"},
	"monitor":                 {"kv", "kv/store", "kv/aof", "log", "queue", "stream", "internal/conf", "internal/dirs", "internal/fdlimit", "internal/repeatlog", "monitor/externalscaler"},
	"monitor/externalscaler":  {},
	"monitor/tracing":         {},
	"log":                     {"internal/dirs", "internal/fdlimit"},
	"kv/store":                {"internal/dirs", "internal/fdlimit"},
	"kv/aof":                  {"internal/dirs"},
	"kv":                      {"kv/store", "kv/aof", "internal/dirs", "internal/fdlimit", "internal/repeatlog"},
	"protocol/resp":           {},
	"internal/conf":           {},
	"internal/dirs":           {},
	"internal/repeatlog":      {},
	"internal/fdlimit":        {},
	"internal/fdlimit/fdtest": {},
	"internal/seeds":          {},
	"stream":                  {"log", "kv/store", "internal/conf", "internal/dirs", "internal/fdlimit", "internal/repeatlog"},
	"queue":                   {"log", "kv/store", "internal/conf", "internal/dirs", "internal/fdlimit", "internal/repeatlog"},
	"server":                  {"protocol", "protocol/resp", "server/subject", "netpoll", "monitor", "kv", "kv/store", "kv/aof", "log", "stream", "queue", "internal/conf", "internal/dirs", "internal/fdlimit", "internal/repeatlog", "monitor/externalscaler", "monitor/tracing"},
	"clients/go":              {"protocol"},
	"cmd/flowmesh":            {"server", "protocol", "protocol/resp", "server/subject", "netpoll", "monitor", "kv", "kv/store", "kv/aof", "log", "stream", "queue", "internal/conf", "internal/dirs", "internal/fdlimit", "internal/repeatlog", "monitor/externalscaler", "monitor/tracing"},
	"bench":                   {"clients/go", "protocol"},
}

const module = "github.com/flowmesh/flowmesh"

type pkgInfo struct {
	ImportPath string
	Deps       []string
	Imports    []string
	GoFiles    []string
	Dir        string
}

func listPackages(t *testing.T) []pkgInfo {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkgInfo
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkgInfo
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// TestLayering checks every package's dependencies against allowedDeps.
func TestLayering(t *testing.T) {
	for _, p := range listPackages(t) {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		if rel == "" {
			continue // this lint package
		}
		allowed, ok := allowedDeps[rel]
		if !ok {
			t.Errorf("package %s is not in the layering table of lint_test.go", rel)
			continue
		}
		for _, d := range p.Deps {
			if !strings.HasPrefix(d, module+"/") {
				continue
			}
			dr := strings.TrimPrefix(d, module+"/")
			if !contains(allowed, dr) {
				t.Errorf("%s imports %s, which the layering forbids", rel, dr)
			}
		}
	}
}

// TestPackageDocs: every package says what it owns in a doc.go.
func TestPackageDocs(t *testing.T) {
	for _, p := range listPackages(t) {
		if p.ImportPath == module {
			continue
		}
		b, err := os.ReadFile(filepath.Join(p.Dir, "doc.go"))
		if err != nil {
			t.Errorf("%s has no doc.go", p.ImportPath)
			continue
		}
		if !strings.Contains(string(b), "Imports:") && !strings.Contains(string(b), "import") {
			t.Errorf("%s/doc.go does not say what the package may import", p.ImportPath)
		}
	}
}

// TestForbiddenCalls bans, outside cmd/ and tests: the standard "log"
// package (our log is the commit log; logging is log/slog), fmt.Print*
// (output goes through a logger or a writer), and raw atomic.Load/Store
// functions (typed atomics say what they guard).
func TestForbiddenCalls(t *testing.T) {
	banned := []struct {
		re  *regexp.Regexp
		why string
	}{
		{regexp.MustCompile(`^\s*"log"\s*$|^import "log"$`), `the standard "log" package; use log/slog`},
		{regexp.MustCompile(`\bfmt\.Print(f|ln)?\(`), "fmt.Print*; write to a logger or an io.Writer"},
		{regexp.MustCompile(`\batomic\.(Load|Store|Add|CompareAndSwap)(Int|Uint|Pointer)`), "raw atomic functions; use typed atomics"},
	}
	for _, p := range listPackages(t) {
		if strings.Contains(p.ImportPath, "/cmd/") || strings.HasSuffix(p.ImportPath, "/bench") {
			continue
		}
		for _, f := range p.GoFiles {
			path := filepath.Join(p.Dir, f)
			fh, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(fh)
			for n := 1; sc.Scan(); n++ {
				for _, b := range banned {
					if b.re.MatchString(sc.Text()) {
						t.Errorf("%s:%d: %s", path, n, b.why)
					}
				}
			}
			fh.Close()
		}
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
