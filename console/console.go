// Package console is rexec's web console: a page of plain HTML, CSS and
// JavaScript, embedded in the binary, that uses the server's own API
// (/scripts/v1, /plugins/v1) with the key a person signs in with. It knows
// nothing of the API's handlers: it serves files, with the headers that
// keep them safe to open.
package console

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
)

//go:embed static
var files embed.FS

// Prefix is where the page's files are served: /console/app.js and the
// like; the page itself is at the root.
const Prefix = "/console/"

// ContentSecurityPolicy is the page's: its own scripts, styles and API
// only; no inline script, no frame around it, no form sent elsewhere.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"

// Handler serves the page (GET /) and its files (GET /console/...).
type Handler struct {
	etags map[string]string // of each file, by its name under static
}

// New returns the console's handler.
func New() *Handler {
	h := &Handler{etags: map[string]string{}}
	fs.WalkDir(files, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		h.etags[strings.TrimPrefix(p, "static/")] = `"` + hex.EncodeToString(sum[:8]) + `"`
		return nil
	})
	return h
}

// ServeHTTP serves "/" as the page and Prefix+name as the file name; any
// other path is not found.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", ContentSecurityPolicy)
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
	hd.Set("Cross-Origin-Resource-Policy", "same-origin")
	name := "index.html"
	if r.URL.Path != "/" {
		name = strings.TrimPrefix(r.URL.Path, Prefix)
		if name == r.URL.Path || name == "index.html" || path.Clean("/"+name) != "/"+name {
			http.NotFound(w, r)
			return
		}
	}
	etag, ok := h.etags[name]
	if !ok {
		http.NotFound(w, r)
		return
	}
	b, err := files.ReadFile("static/" + name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	ctype := mime.TypeByExtension(path.Ext(name))
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	hd.Set("Content-Type", ctype)
	if name == "index.html" {
		// The page shows runs' output: no cache keeps it.
		hd.Set("Cache-Control", "no-store")
	} else {
		hd.Set("Cache-Control", "no-cache") // kept, and checked each time
		hd.Set("ETag", etag)
		if matches(r.Header.Get("If-None-Match"), etag) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(b)
	}
}

// matches reports whether an If-None-Match header names etag: "*", or
// etag in its list, strong or weak (a proxy that compresses the file makes
// its tag weak).
func matches(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == etag {
			return true
		}
	}
	return false
}
