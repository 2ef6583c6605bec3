package webapi

import "testing"

// completeUTF8 keeps back the start of a character cut at a chunk's end,
// and nothing else.
func TestCompleteUTF8(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int
	}{
		{"", 0}, {"abc", 3}, {"ü", 2}, {"a\xc3", 1}, {"a\xe6\x97", 1}, {"\xe6\x97\xa5", 3},
		{"a\xf0\x9f\x98", 1}, {"\xf0\x9f\x98\x80", 4}, {"\xff\xfe", 2}, {"a\x80", 2}, {"日本\xe8", 6},
	} {
		if got := completeUTF8([]byte(c.in)); got != c.want {
			t.Errorf("completeUTF8(%q) = %d, want %d", c.in, got, c.want)
		}
	}
}
