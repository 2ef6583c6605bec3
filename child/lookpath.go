package child

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// lookPath finds file as execvp would, in the PATH of env (the child's own
// environment), falling back to the server's PATH. Found paths are cached for
// pathCacheTTL: a long PATH costs a stat per entry, which was a tenth of the
// server's CPU when spawning short commands. A new executable earlier in PATH
// is seen within the TTL; one that disappears makes the start fail and drops
// the entry (forgetPath).
func lookPath(file string, env []string, dir string) (string, error) {
	if strings.Contains(file, "/") {
		return file, nil
	}
	pathVar, found := "", false
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], "PATH="); ok {
			pathVar, found = v, true
			break
		}
	}
	if !found {
		pathVar = os.Getenv("PATH")
	}
	key := pathKey{file: file, path: pathVar, dir: dir}
	if p, ok := pathCache.get(key); ok {
		return p, nil
	}
	denied := false
	for _, d := range filepath.SplitList(pathVar) {
		if d == "" {
			d = "."
		}
		p := filepath.Join(d, file)
		full := p
		if !filepath.IsAbs(full) && dir != "" {
			full = filepath.Join(dir, p)
		}
		fi, err := os.Stat(full)
		if err != nil || fi.IsDir() {
			continue
		}
		if fi.Mode()&0o111 == 0 {
			denied = true
			continue
		}
		if !filepath.IsAbs(p) {
			if dir == "" {
				p = "./" + p
			}
			return p, nil // relative PATH entries are not cached
		}
		pathCache.put(key, p)
		return p, nil
	}
	if denied {
		return "", fmt.Errorf("%s: %w", file, syscall.EACCES)
	}
	return "", fmt.Errorf("%s: executable file not found in $PATH", file)
}

// forgetPath drops the cached lookups of file, after its start failed.
func forgetPath(file string) {
	if strings.Contains(file, "/") {
		return
	}
	pathCache.mu.Lock()
	defer pathCache.mu.Unlock()
	for k := range pathCache.m {
		if k.file == file {
			delete(pathCache.m, k)
		}
	}
}

const (
	pathCacheTTL = time.Second
	pathCacheMax = 1024 // entries; the cache is cleared when full
)

type pathKey struct{ file, path, dir string }

type pathEntry struct {
	path    string
	expires time.Time
}

// lookupCache maps lookups to their result.
type lookupCache struct {
	mu sync.Mutex // guards m
	m  map[pathKey]pathEntry
}

var pathCache = &lookupCache{m: make(map[pathKey]pathEntry)}

func (c *lookupCache) get(k pathKey) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok || time.Now().After(e.expires) {
		return "", false
	}
	return e.path, true
}

func (c *lookupCache) put(k pathKey, p string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= pathCacheMax {
		clear(c.m)
	}
	c.m[k] = pathEntry{path: p, expires: time.Now().Add(pathCacheTTL)}
}
