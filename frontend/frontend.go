// Package frontend embeds the collabd demo page and the browser client library collab.js.
//
// The files live in static/ and are served as they are: plain HTML, CSS and ES modules, with no
// build step and no external network resources. Mount FS at a path that ends in a slash (for
// example "/" or "/demo/"): the page uses relative URLs for its assets and connects to
// /ws/{doc} (or its fallbacks /sse/{doc} and /poll/{doc}) on the same origin.
//
// collab.js is also the npm package @collabd/client: package.json and the TypeScript
// declarations collab.d.ts sit here, outside static/; types-check/ type-checks an example
// against them (docs/client.md).
package frontend

import (
	"embed"
	"io/fs"
)

//go:embed static
var static embed.FS

// FS returns the demo's static files, rooted so that "index.html", "collab.js", "app.js" and
// "style.css" sit at the top level.
func FS() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		// fs.Sub fails only for an invalid path; "static" is a constant valid one.
		panic("frontend: " + err.Error())
	}
	return sub
}
