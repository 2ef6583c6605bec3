package catalog_test

import (
	"fmt"
	"strings"

	"github.com/rexec/rexec/catalog"
)

func Example() {
	c, err := catalog.Parse(strings.NewReader(`
# Two at a time, in /srv; the run's first argument goes inside -o=.
-d=/srv -s=2 convert /usr/bin/convert @@1 -o=@@2
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	s, _ := c.Lookup("convert")
	argv, err := s.Argv([]string{"in put.png", "$(rm -rf ~).jpg"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(s.Path, s.Dir, s.Concurrency)
	fmt.Printf("%q\n", argv)

	_, err = s.Argv([]string{"only-one"})
	fmt.Println(err)
	// Output:
	// /usr/bin/convert /srv 2
	// ["in put.png" "-o=$(rm -rf ~).jpg"]
	// missing argument: script "convert" uses @@2, the run gave 1 argument(s)
}

func ExampleParseError() {
	_, err := catalog.Parse(strings.NewReader("ok /bin/true\n-s 2 slow /bin/sleep 9\n"))
	fmt.Println(err)
	// Output:
	// exectab:2: -s needs a value: write -s=N
}
