package fleet

import (
	"strings"
	"testing"
)

func TestToken(t *testing.T) {
	for _, s := range []string{"backup", "a-b_c", "a.b", "*", ">", "a b", "=x", "é", strings.Repeat("x", 300)} {
		tok := Token(s)
		if strings.ContainsAny(tok, ".*> \t\r\n") || tok == "" {
			t.Errorf("Token(%q) = %q: not one subject token", s, tok)
		}
		back, err := FromToken(tok)
		if err != nil || back != s {
			t.Errorf("FromToken(Token(%q)) = %q, %v", s, back, err)
		}
	}
	if Token("=x") == "=x" {
		t.Error("a string that looks encoded must be encoded")
	}
}

func TestCheckName(t *testing.T) {
	for _, ok := range []string{"a", "prod-1", "EU_west", strings.Repeat("x", 32)} {
		if err := CheckName(ok); err != nil {
			t.Errorf("CheckName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a.b", "a b", "*", ">", "é", strings.Repeat("x", 33)} {
		if err := CheckName(bad); err == nil {
			t.Errorf("CheckName(%q) = nil", bad)
		}
	}
}
