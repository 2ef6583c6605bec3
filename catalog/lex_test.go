package catalog

import (
	"slices"
	"testing"
)

func TestTokenize(t *testing.T) {
	tests := []struct {
		line string
		want []string
	}{
		{"", nil},
		{"  \t ", nil},
		{"a b\tc", []string{"a", "b", "c"}},
		{`"a b"`, []string{"a b"}},
		{`'a b'`, []string{"a b"}},
		{`x"a b"y'c d'z`, []string{"xa byc dz"}},
		{`'' ""`, []string{"", ""}},
		{`a\ b \' \" \\`, []string{"a b", "'", `"`, `\`}},
		{`"\a\"\\\$\` + "`" + `"`, []string{`\a"\$` + "`"}},
		{`'\n\'`, []string{`\n\`}}, // no escapes inside single quotes
		{`"it's"`, []string{"it's"}},
		{`'say "hi"'`, []string{`say "hi"`}},
		{"-d='/a b' x", []string{"-d=/a b", "x"}},
		{"#a b#", []string{"#a", "b#"}},
	}
	for _, tt := range tests {
		got, err := tokenize(tt.line)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("tokenize(%q) = %q, %v; want %q", tt.line, got, err, tt.want)
		}
	}
	for _, bad := range []string{`'a`, `"a`, `a\`, `'it\'s'`, `"a\"`} {
		if got, err := tokenize(bad); err == nil {
			t.Errorf("tokenize(%q) = %q, want an error", bad, got)
		}
	}
}

func TestQuoteRoundTrip(t *testing.T) {
	for _, s := range []string{"", "a", "a b", "it's", `"`, `\`, "\t", "'''", `a\'b"c d`, "#x", "@@1", "-x=y z"} {
		toks, err := tokenize(quote(s))
		if err != nil || len(toks) != 1 || toks[0] != s {
			t.Errorf("quote(%q) = %s reads back as %q, %v", s, quote(s), toks, err)
		}
	}
}

func TestScanParam(t *testing.T) {
	type piece struct {
		lit string
		n   int
	}
	tests := []struct {
		p    string
		want []piece
		most int
	}{
		{"plain", []piece{{"plain", 0}}, 0},
		{"@@1", []piece{{"", 1}, {"", 0}}, 1},
		{"-o=@@12x", []piece{{"-o=", 12}, {"x", 0}}, 12},
		{"@@@1", []piece{{"@", 1}, {"", 0}}, 1},
		{"@@1@@2", []piece{{"", 1}, {"", 2}, {"", 0}}, 2},
		{"a@@b@@", []piece{{"a@@b@@", 0}}, 0},
	}
	for _, tt := range tests {
		var got []piece
		most, err := scanParam(tt.p, func(lit string, n int) { got = append(got, piece{lit, n}) })
		if err != nil || most != tt.most || !slices.Equal(got, tt.want) {
			t.Errorf("scanParam(%q) = %v, %d, %v; want %v, %d", tt.p, got, most, err, tt.want, tt.most)
		}
	}
	for _, bad := range []string{"@@0", "x@@00", "@@07", "@@257", "@@1000", "@@123456789012345678901234567890"} {
		if _, err := scanParam(bad, nil); err == nil {
			t.Errorf("scanParam(%q) accepted it", bad)
		}
	}
}
