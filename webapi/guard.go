package webapi

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// Browsers and DNS rebinding.
//
// A server on 127.0.0.1 is reachable from every page its user opens: a page
// can POST a "simple" request (a form or text/plain body, no preflight) to
// it, and with DNS rebinding (a name of the attacker's that resolves to
// 127.0.0.1 once the page has loaded) read the answers too. Two checks on
// every request, before authentication, close both:
//
//   - Host: the server answers only to the names it is known by: an IP
//     literal, localhost (and names under .localhost, which browsers resolve
//     to loopback themselves), or a name listed with --allowed-host. A
//     rebinding page sends its own name, which is none of those.
//   - Origin: a request that a browser marks as coming from another site (an
//     Origin header that is not the server's own origin nor one listed with
//     --allowed-origin, or Sec-Fetch-Site: cross-site) is refused. curl, Go
//     and Python clients send neither header.
//
// This is how Jupyter, Vite and webpack-dev-server protect their local
// servers.

// codeForbiddenOrigin is the errorcode of a request a browser made for a page
// of another site.
const codeForbiddenOrigin = "forbidden_origin"

// siteGuard holds the Host and Origin rules, parsed once.
type siteGuard struct {
	anyHost   bool
	hosts     map[string]bool // exact names, lower case
	suffixes  []string        // ".example.com": the name and its subdomains
	anyOrigin bool
	origins   map[string]bool // "scheme://host[:port]", lower case
}

// newSiteGuard parses the allowed hosts and origins. It fails on a value
// that could never match, so that a typo is found at start-up.
func newSiteGuard(hosts, origins []string) (*siteGuard, error) {
	g := &siteGuard{hosts: map[string]bool{}, origins: map[string]bool{}}
	for _, h := range hosts {
		h = strings.ToLower(strings.TrimSpace(h))
		switch {
		case h == "*":
			g.anyHost = true
		case h == "" || strings.ContainsAny(h, "/:@ "):
			return nil, fmt.Errorf("allowed host %q: give a host name such as rexec.example.com (no scheme, port or path), .example.com for a domain and its subdomains, or * for any", h)
		case strings.HasPrefix(h, "."):
			g.suffixes = append(g.suffixes, strings.TrimSuffix(h, "."))
		default:
			g.hosts[strings.TrimSuffix(h, ".")] = true
		}
	}
	for _, o := range origins {
		o = strings.ToLower(strings.TrimSpace(o))
		if o == "*" {
			g.anyOrigin = true
			continue
		}
		u, err := url.Parse(o)
		if o != "null" && (err != nil || u.Scheme == "" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil) {
			return nil, fmt.Errorf("allowed origin %q: give an origin such as https://console.example.com (scheme, host and port only), or * for any", o)
		}
		g.origins[strings.TrimSuffix(o, "/")] = true
	}
	return g, nil
}

// check returns the errorcode and message of a refusal, or "" when the
// request may go on.
func (g *siteGuard) check(r *http.Request) (code, msg string) {
	if !g.hostAllowed(r.Host) {
		return "forbidden_host", fmt.Sprintf("this server does not answer to the host name %q: "+
			"use its IP address or localhost, or start it with --allowed-host for that name", r.Host)
	}
	if g.anyOrigin {
		return "", ""
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		if !g.originAllowed(origin, r.Host) {
			return codeForbiddenOrigin, fmt.Sprintf("requests from pages of %q are refused: "+
				"start the server with --allowed-origin for that origin", origin)
		}
		return "", ""
	}
	if strings.EqualFold(r.Header.Get("Sec-Fetch-Site"), "cross-site") {
		return codeForbiddenOrigin, "requests from pages of other sites are refused"
	}
	return "", ""
}

// hostAllowed reports whether the server answers to host, a Host header.
func (g *siteGuard) hostAllowed(host string) bool {
	if g.anyHost || host == "" { // no Host at all: HTTP/1.0, never a browser
		return true
	}
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	} else if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		name = host[1 : len(host)-1]
	}
	if i := strings.IndexByte(name, '%'); i >= 0 && strings.Contains(name, ":") {
		name = name[:i] // an IPv6 zone
	}
	if net.ParseIP(name) != nil {
		return true
	}
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	if name == "localhost" || strings.HasSuffix(name, ".localhost") || g.hosts[name] {
		return true
	}
	for _, sfx := range g.suffixes {
		if name == sfx[1:] || strings.HasSuffix(name, sfx) {
			return true
		}
	}
	return false
}

// originAllowed reports whether a browser's Origin header names the
// server's own origin (the host the request was sent to) or a listed one.
func (g *siteGuard) originAllowed(origin, host string) bool {
	o := strings.ToLower(origin)
	if g.origins[o] {
		return true
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	// Browsers write the default port in neither header, so the same
	// origin has the same host:port in both.
	return host != "" && strings.EqualFold(u.Host, host)
}
