package webapi

import "strconv"

// shedResponse is the whole answer to a connection that the server accepted
// with its reserve descriptor only to refuse it, out of descriptors
// (package stream's listener sheds it): a 503 in the shape of every other,
// with Retry-After.
var shedResponse = func() string {
	body := `{"error":"the server is out of file descriptors (too many open files): try again in a moment"}` + "\n"
	return "HTTP/1.1 503 Service Unavailable\r\n" +
		"Content-Type: application/json\r\n" +
		"Retry-After: " + retryAfter + "\r\n" +
		"Connection: close\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n" +
		"\r\n" + body
}()
