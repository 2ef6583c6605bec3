package catalog

import (
	"errors"
	"strings"
)

// tokenize splits a line into tokens: blanks (space, tab) separate them,
// quotes group and are removed, a backslash outside quotes takes the next
// character literally, one inside double quotes escapes only " \ $ and `.
// Nothing is expanded.
func tokenize(line string) ([]string, error) {
	var toks []string
	var cur strings.Builder
	inTok := false // a token has begun, possibly empty ('' or "")
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch c {
		case ' ', '\t':
			if inTok {
				toks = append(toks, cur.String())
				cur.Reset()
				inTok = false
			}
		case '\\':
			if i+1 == len(line) {
				return nil, errors.New("backslash at the end of the line")
			}
			i++
			cur.WriteByte(line[i])
			inTok = true
		case '\'':
			end := strings.IndexByte(line[i+1:], '\'')
			if end < 0 {
				return nil, errors.New("unterminated ' quote")
			}
			cur.WriteString(line[i+1 : i+1+end])
			i += 1 + end
			inTok = true
		case '"':
			closed := false
			for i++; i < len(line); i++ {
				c := line[i]
				if c == '"' {
					closed = true
					break
				}
				if c == '\\' && i+1 < len(line) && strings.IndexByte("\"\\$`", line[i+1]) >= 0 {
					i++
					c = line[i]
				}
				cur.WriteByte(c)
			}
			if !closed {
				return nil, errors.New(`unterminated " quote`)
			}
			inTok = true
		default:
			cur.WriteByte(c)
			inTok = true
		}
	}
	if inTok {
		toks = append(toks, cur.String())
	}
	return toks, nil
}

// quote writes s as one token that tokenize reads back as s.
func quote(s string) string {
	if s == "" {
		return "''"
	}
	if !strings.ContainsAny(s, " \t'\"\\") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
