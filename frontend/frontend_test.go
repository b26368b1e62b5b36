package frontend

import (
	"io/fs"
	"regexp"
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
