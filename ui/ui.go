// Package ui is the operator's web page, served by the API process. Its
// files are embedded at build time, so the binary needs no CDN and no
// separate asset deployment.
package ui

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// Handler serves the operator page and its assets.
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		// The embedded tree is fixed at build time; a missing folder is a
		// build defect, caught by the package's test.
		panic(err)
	}
	return http.FileServerFS(sub)
}
