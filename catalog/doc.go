// Package catalog owns the script catalogue: it parses and validates an
// exectab file into immutable Scripts and turns a run's arguments into argv,
// never through a shell. It reads the exectab and the user and group
// databases (for -u and -g) and nothing else: it starts no process, keeps no
// queue, limit or history, and knows nothing of HTTP. What a Script says is
// applied elsewhere: package launch turns it into what the broker starts
// (-i, -t, and -s as a limit of the broker), and package detached keeps its
// queue (-m) and its history in the store (-r). Reloading is the caller's:
// Load a new Catalog and swap it whole; a Catalog never changes.
//
// # The exectab format
//
// The format is the one of the Cloud Storage Server /scripts extension
// ("very similar to crontab except it doesn't have anything to do with
// scheduling"). testdata/exectab.example shows every feature by example.
//
// Each line that is not blank and not a comment defines one script:
//
//	[options] scriptname [executable [params]]
//
// Lines and tokens:
//   - A line whose first non-blank character is '#' is a comment. '#' later
//     in a line is an ordinary character: there are no trailing comments, as
//     in crontab, so `x /bin/echo #1` passes "#1".
//   - Tokens are separated by spaces and tabs. Single and double quotes group
//     characters, spaces included, into one token and are removed; a
//     backslash outside quotes takes the next character literally; inside
//     double quotes a backslash escapes only ", \, $ and `. A pair of quotes
//     with nothing between them is an empty token. Nothing is expanded: no
//     variables, globs or ~.
//   - A line is UTF-8 without control characters other than tab, at most
//     MaxLineLen bytes; CRLF line ends and a leading byte order mark are
//     accepted.
//
// Options come before the script name, and only there; every option that
// takes a value is written -x=value, as in the seed (-s=5, never -s 5 or
// -s5), and the value may be quoted (-d="/srv/my dir"):
//
//	-a           allow a run's arguments to begin with '-' where they start a
//	             param (see below)
//	-d=DIR       start directory (an absolute path)
//	-e=VAR=VALUE environment variable added to the server's; repeatable
//	-g=GROUP     group to run the process as (name or numeric id)
//	-i           allow stdin; without it a run with stdin is refused
//	-m=N         maximum queue length, counting queued and running runs;
//	             0 or no -m means unlimited
//	-n           no process: a run only notifies monitors; everything after
//	             the name is params (handed to monitors), never an executable
//	-r           remove successful and cancelled runs from the history
//	-s=N         how many runs may execute at once (N >= 1, default 1)
//	-t=DURATION  the longest a run may take: a run asking for more is capped
//	             to it, and the run's process group is terminated when it
//	             expires; a Go duration (30s, 10m, 2h45m), optionally after
//	             a whole number of days (1d, 1d12h), positive and at most
//	             100 years (MaxTimeout); no -t is no limit
//	-u=USER      user to run the process as (name or numeric id)
//	--tty        a run may ask for a terminal (a pseudo-terminal as its
//	             stdin, stdout and stderr); without it such a run is refused
//
// Each option may be given once, except -e. Flags cannot be combined (-in is
// an unknown option). A line with only a script name starts no process and
// only notifies monitors, like -n; -a, -d, -e, -g, -i, -t and -u are errors
// on a script that starts no process, since they could have no effect.
//
// The script name holds only letters, digits, '.', '_' and '-', starts with a
// letter, digit or '_' and is at most MaxNameLen bytes. The executable is an
// absolute path or a bare name looked up in PATH when the run starts; a
// relative path such as ./x is refused because its meaning would depend on
// the server's working directory.
//
// In params, @@1, @@2, ... stand for the run's first, second, ... argument,
// also inside a larger param (-o=@@1 with argument "x" gives -o=x). Every
// param stays exactly one argv element whatever the argument holds, and an
// inserted argument is never scanned again. @@ followed by anything but a
// digit is literal; @@0, leading zeros (@@01) and numbers above MaxArgs are
// errors, as is @@ in the executable, the directory or an environment value.
// A run must give exactly as many arguments as the highest @@N it uses
// (Script.NumArgs): fewer is ErrMissingArgument, more ErrTooManyArguments.
// An argument must be valid UTF-8 without NUL bytes (ErrInvalidArgument);
// no byte of it is ever replaced.
//
// A run's argument cannot become an option of the program: an argument that
// would make a param begin with '-' when the param as written does not
// (find /srv @@1 run with "-delete") is refused with ErrOptionArgument. A
// '-' written in the exectab is the administrator's and always allowed:
// -o=@@1 and --out=@@1 take any argument. Arguments may begin with '-' in
// two cases only: the script has -a, or a param that is exactly -- comes
// earlier in the params, the POSIX end of options after which arguments are
// data (rm -- @@1 may remove a file called -x). A script that starts no
// process hands its params only to monitors, and the rule does not apply.
//
// Any malformed line makes the whole file invalid (a *ParseError with the line
// number), as do two scripts with the same name and a -u or -g that names a
// user or group this machine does not have.
package catalog
