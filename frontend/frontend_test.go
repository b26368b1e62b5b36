package frontend

import (
	"encoding/json"
	"io/fs"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := fs.ReadFile(FS(), name)
	if err != nil {
		t.Fatalf("embedded %s: %v", name, err)
	}
	if len(b) == 0 {
		t.Fatalf("embedded %s is empty", name)
	}
	return string(b)
}

func staticFiles(t *testing.T) []string {
	t.Helper()
	var names []string
	err := fs.WalkDir(FS(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			names = append(names, path)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk embedded files: %v", err)
	}
	return names
}

func TestFSContainsPageAndClient(t *testing.T) {
	for _, name := range []string{"index.html", "collab.js", "app.js", "style.css"} {
		readFile(t, name)
	}
	if _, err := fs.Stat(FS(), "static"); err == nil {
		t.Error(`FS is not rooted at the static folder: "static" exists inside it`)
	}
}

func TestIndexReferencesClient(t *testing.T) {
	html := readFile(t, "index.html")
	if !regexp.MustCompile(`(src|href)="(\./)?collab\.js"`).MatchString(html) {
		t.Error("index.html does not reference collab.js")
	}
	if !regexp.MustCompile(`<script type="module" src="(\./)?app\.js">`).MatchString(html) {
		t.Error("index.html does not load app.js as a module")
	}
	if !regexp.MustCompile(`import \{[^}]*\bconnect\b[^}]*\} from '\./collab\.js'`).MatchString(readFile(t, "app.js")) {
		t.Error("app.js does not import connect from ./collab.js")
	}
	if !strings.Contains(readFile(t, "collab.js"), "export function connect(") {
		t.Error("collab.js does not export connect")
	}
}

// Every local src/href in index.html must exist, and none may point at the network.
func TestIndexReferencesResolve(t *testing.T) {
	html := readFile(t, "index.html")
	refs := regexp.MustCompile(`\b(?:src|href)="([^"]*)"`).FindAllStringSubmatch(html, -1)
	if len(refs) < 3 {
		t.Fatalf("index.html has only %d src/href attributes", len(refs))
	}
	for _, m := range refs {
		ref := m[1]
		switch {
		case strings.HasPrefix(ref, "data:"):
		case strings.Contains(ref, "//"):
			t.Errorf("index.html loads an external resource: %q", ref)
		default:
			name := strings.TrimPrefix(ref, "./")
			if _, err := fs.Stat(FS(), name); err != nil {
				t.Errorf("index.html references %q, which is not embedded: %v", ref, err)
			}
		}
	}
}

// User data (names, payloads) must never be parsed as HTML.
func TestNoHTMLInjectionSinks(t *testing.T) {
	sinks := []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "createContextualFragment", "eval("}
	files := staticFiles(t)
	if len(files) < 4 {
		t.Fatalf("only %d embedded files: %v", len(files), files)
	}
	for _, name := range files {
		text := readFile(t, name)
		for _, sink := range sinks {
			if strings.Contains(text, sink) {
				t.Errorf("%s uses %s", name, sink)
			}
		}
		for _, bad := range []string{"@import", "url(http", "src=\"http", "href=\"http"} {
			if strings.Contains(text, bad) {
				t.Errorf("%s references external resources (%s)", name, bad)
			}
		}
	}
}

// The client and the page validate document ids with the pattern of the protocol (DESIGN.md 3).
func TestDocumentIDPattern(t *testing.T) {
	const pattern = `/^[A-Za-z0-9_\-:.]{1,128}$/`
	for _, name := range []string{"collab.js", "app.js"} {
		if !strings.Contains(readFile(t, name), pattern) {
			t.Errorf("%s does not validate document ids with %s", name, pattern)
		}
	}
}

// readRepoFile reads a file of the package folder that is not embedded (the npm package's).
func readRepoFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return string(b)
}

// The npm package: an ES module without runtime dependencies whose entry points exist.
func TestPackageJSON(t *testing.T) {
	var pkg struct {
		Name         string                     `json:"name"`
		Type         string                     `json:"type"`
		Types        string                     `json:"types"`
		Exports      map[string]json.RawMessage `json:"exports"`
		Files        []string                   `json:"files"`
		Dependencies map[string]string          `json:"dependencies"`
		Peer         map[string]string          `json:"peerDependencies"`
	}
	if err := json.Unmarshal([]byte(readRepoFile(t, "package.json")), &pkg); err != nil {
		t.Fatalf("package.json: %v", err)
	}
	if pkg.Name == "" || pkg.Type != "module" {
		t.Errorf("package.json: name %q, type %q; want a name and type module", pkg.Name, pkg.Type)
	}
	if len(pkg.Dependencies)+len(pkg.Peer) != 0 {
		t.Errorf("package.json has runtime dependencies: %v %v", pkg.Dependencies, pkg.Peer)
	}
	var main struct{ Types, Default string }
	if err := json.Unmarshal(pkg.Exports["."], &main); err != nil || main.Types == "" || main.Default == "" {
		t.Fatalf(`package.json: exports["."] = %s, want {"types", "default"} (%v)`, pkg.Exports["."], err)
	}
	for _, f := range []string{pkg.Types, main.Types, main.Default} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("package.json names %q: %v", f, err)
		}
		if !slices.Contains(pkg.Files, strings.TrimPrefix(f, "./")) {
			t.Errorf("package.json: %q is not in files %v", f, pkg.Files)
		}
	}
	if main.Default != "./static/collab.js" {
		t.Errorf(`package.json: exports["."].default = %q, want the embedded ./static/collab.js`, main.Default)
	}
}

// collab.d.ts types everything collab.js offers: exports, connection members, options and
// events. (tsc checks the declarations themselves; this catches an API added to one file only.)
func TestTypesCoverAPI(t *testing.T) {
	js := readFile(t, "collab.js")
	dts := readRepoFile(t, "collab.d.ts")
	block := func(name, text, start string) string {
		t.Helper()
		i := strings.Index(text, start)
		if i < 0 {
			t.Fatalf("%s: no %q", name, start)
		}
		depth := 0
		for j := i + len(start) - 1; j < len(text); j++ {
			switch text[j] {
			case '{':
				depth++
			case '}':
				if depth--; depth == 0 {
					return text[i : j+1]
				}
			}
		}
		t.Fatalf("%s: %q is not closed", name, start)
		return ""
	}
	names := func(re, text string) []string {
		var out []string
		for _, m := range regexp.MustCompile(re).FindAllStringSubmatch(text, -1) {
			if !slices.Contains(out, m[1]) {
				out = append(out, m[1])
			}
		}
		if len(out) == 0 {
			t.Fatalf("no match for %s", re)
		}
		return out
	}
	check := func(what string, want []string, in string) {
		t.Helper()
		for _, n := range want {
			if !regexp.MustCompile(`(?m)^\s*(readonly\s+|export declare (function|class|const)\s+)?` + n + `\b`).MatchString(in) {
				t.Errorf("collab.d.ts does not declare %s %q", what, n)
			}
		}
	}
	check("export", names(`export (?:function|class|const) (\w+)`, js), dts)
	// The connection object is the last object literal connect returns.
	ret := js[strings.LastIndex(js[:strings.Index(js, "// ---- helpers")], "\n  return {"):]
	check("connection member", names(`(?m)^    (?:get )?(\w+)(?:\(|,)`, block("collab.js", ret, "return {")), block("collab.d.ts", dts, "export interface Connection<"))
	check("option", names(`opts\.(\w+)`, js), block("collab.d.ts", dts, "export interface ConnectOptions {"))
	check("event", names(`emit\('(\w+)'`, js), block("collab.d.ts", dts, "export interface CollabEvents<"))
}
