package protocol

import "bytes"

// Verb identifies a command once parsed. IDs are assigned by whoever builds
// the Table (the server for client→server verbs, an SDK for server→client
// frames); the parser only carries them.
type Verb uint16

// VerbNone is the zero Verb: no frame.
const VerbNone Verb = 0

// Shape says what follows a verb's control line.
type Shape uint8

const (
	// NoPayload: the control line is the whole command.
	NoPayload Shape = iota
	// Sized: the last argument is a payload length; the payload and a line
	// end follow. The "H" form of the verb (PUB → HPUB) takes two trailing
	// sizes, header length and total length, and its payload starts with a
	// NATS/1.0 header block.
	Sized
	// Raw: everything after the verb is one argument (INFO {json},
	// CONNECT {json}, -ERR 'text').
	Raw
)

// Spec describes one verb for the parser.
type Spec struct {
	Name    string // upper case on the wire, matched case-insensitively
	ID      Verb
	Shape   Shape
	MinArgs int // arguments before the size argument(s)
	MaxArgs int
	// HeaderID is the Verb reported for the "H" form of a Sized verb; zero
	// means the H form is not accepted.
	HeaderID Verb
}

// maxVerbLen bounds a verb so matching can upper-case it into a stack array.
const maxVerbLen = 24

// MaxArgs is the most arguments any verb may carry, sizes included.
const MaxArgs = 16

// Table maps verbs to specs. It is built once and read-only afterwards, so
// it may be shared by every connection.
type Table struct {
	specs map[string]*entry
}

type entry struct {
	spec   Spec
	header bool // this is the H form of spec
}

// NewTable builds a table. It panics on a duplicate or malformed name: a
// table is a program constant and a bad one is a programming error.
func NewTable(specs ...Spec) *Table {
	t := &Table{specs: make(map[string]*entry, len(specs)*2)}
	for _, s := range specs {
		t.add(s.Name, &entry{spec: s})
		if s.Shape == Sized && s.HeaderID != VerbNone {
			t.add("H"+s.Name, &entry{spec: s, header: true})
		}
	}
	return t
}

func (t *Table) add(name string, e *entry) {
	if len(name) == 0 || len(name) > maxVerbLen {
		panic("protocol: bad verb name " + name)
	}
	up := []byte(name)
	for i := range up {
		up[i] = upper(up[i])
	}
	if _, dup := t.specs[string(up)]; dup {
		panic("protocol: duplicate verb " + name)
	}
	t.specs[string(up)] = e
}

// Limits bound every length before the parser trusts it.
type Limits struct {
	MaxControlLine int // bytes in one control line, line end included
	MaxPayload     int // bytes in one payload, header block included
	MaxHeader      int // bytes in one header block
}

// DefaultLimits are NATS's defaults.
var DefaultLimits = Limits{MaxControlLine: 4096, MaxPayload: 1 << 20, MaxHeader: 64 << 10}

// Frame is one parsed command. See the package doc for the lifetime of its
// slices.
type Frame struct {
	Verb    Verb
	Name    []byte   // the verb as sent
	Args    [][]byte // arguments, sizes excluded
	Header  []byte   // the NATS/1.0 header block of an H form, nil otherwise
	Payload []byte   // the payload after the header block
	// Sizes holds the size argument(s) as sent, so an encoder can reuse
	// the digits instead of formatting an int again.
	Size []byte
}

// Parser is a restartable parser over a connection's buffered input. It keeps
// no state between calls except its argument array: if a frame is
// incomplete, Next reports how many bytes it needs and the caller calls again
// with the same bytes plus more.
type Parser struct {
	table  *Table
	limits Limits
	args   [MaxArgs][]byte
}

// NewParser returns a parser for table with limits l. Zero limits take the
// DefaultLimits values.
func NewParser(t *Table, l Limits) *Parser {
	if l.MaxControlLine <= 0 {
		l.MaxControlLine = DefaultLimits.MaxControlLine
	}
	if l.MaxPayload <= 0 {
		l.MaxPayload = DefaultLimits.MaxPayload
	}
	if l.MaxHeader <= 0 {
		l.MaxHeader = DefaultLimits.MaxHeader
	}
	return &Parser{table: t, limits: l}
}

// Limits returns the limits in force.
func (p *Parser) Limits() Limits { return p.limits }

// Next parses the first frame in buf into f.
//
//   - A complete frame: n > 0 is the number of bytes it took, err == nil.
//   - An incomplete frame: n == 0, need > len(buf) is the smallest total
//     length of buf worth calling again with.
//   - A bad frame: err is an *Error. If it is not Fatal, n > 0 bytes were
//     consumed and parsing may go on after them; if it is Fatal, the stream
//     cannot be trusted and the connection must be closed.
//
// Blank lines are skipped and counted in n of the frame that follows them.
func (p *Parser) Next(buf []byte, f *Frame) (n, need int, err *Error) {
	skip := 0
	for skip < len(buf) && (buf[skip] == '\n' || buf[skip] == '\r' && skip+1 < len(buf) && buf[skip+1] == '\n') {
		if buf[skip] == '\r' {
			skip++
		}
		skip++
	}
	line := buf[skip:]
	nl := bytes.IndexByte(line, '\n')
	if nl < 0 {
		if len(line) >= p.limits.MaxControlLine {
			return 0, 0, Errorf(CodeControlLineTooLong, "no line end in %d bytes", len(line))
		}
		return 0, len(buf) + 1, nil
	}
	if nl+1 > p.limits.MaxControlLine {
		return 0, 0, Errorf(CodeControlLineTooLong, "line of %d bytes, max %d", nl+1, p.limits.MaxControlLine)
	}
	lineEnd := skip + nl + 1
	ctl := line[:nl]
	if len(ctl) > 0 && ctl[len(ctl)-1] == '\r' {
		ctl = ctl[:len(ctl)-1]
	}
	name, rest := splitVerb(ctl)
	e := p.lookup(name)
	if e == nil {
		return lineEnd, 0, Errorf(CodeUnknownVerb, "%s", snippet(name))
	}
	*f = Frame{Verb: e.spec.ID, Name: name}
	if e.header {
		f.Verb = e.spec.HeaderID
	}
	if e.spec.Shape == Raw {
		f.Args = p.args[:0]
		if len(rest) > 0 {
			f.Args = append(f.Args, rest)
		}
		return lineEnd, 0, nil
	}
	args, ok := splitArgs(rest, p.args[:0])
	if !ok {
		return lineEnd, 0, Errorf(CodeBadArgs, "%s: more than %d arguments", name, MaxArgs)
	}
	if e.spec.Shape == NoPayload {
		if len(args) < e.spec.MinArgs || len(args) > e.spec.MaxArgs {
			return lineEnd, 0, argCountErr(name, e.spec, len(args))
		}
		f.Args = args
		return lineEnd, 0, nil
	}
	return p.sized(buf, lineEnd, e, args, f)
}

// sized finishes a frame whose payload length is in its last argument(s).
func (p *Parser) sized(buf []byte, lineEnd int, e *entry, args [][]byte, f *Frame) (int, int, *Error) {
	nsizes := 1
	if e.header {
		nsizes = 2
	}
	nargs := len(args) - nsizes
	if nargs < e.spec.MinArgs || nargs > e.spec.MaxArgs {
		return lineEnd, 0, argCountErr(f.Name, e.spec, nargs)
	}
	total := parseSize(args[len(args)-1])
	if total < 0 {
		return 0, 0, Errorf(CodeBadSize, "%s: size %s is not a number", f.Name, snippet(args[len(args)-1]))
	}
	if total > p.limits.MaxPayload {
		return 0, 0, Errorf(CodeMaxPayload, "%d bytes, max %d", total, p.limits.MaxPayload)
	}
	hdr := 0
	if e.header {
		hdr = parseSize(args[len(args)-2])
		if hdr < 0 || hdr > total {
			return 0, 0, Errorf(CodeBadSize, "%s: header size %s not a number in [0, %d]", f.Name, snippet(args[len(args)-2]), total)
		}
	}
	f.Args = args[:nargs]
	f.Size = args[len(args)-1]
	end := lineEnd + total
	// The payload is followed by CRLF or a bare LF.
	if len(buf) <= end {
		return 0, end + 1, nil
	}
	switch buf[end] {
	case '\n':
		end++
	case '\r':
		if len(buf) <= end+1 {
			return 0, end + 2, nil
		}
		if buf[end+1] != '\n' {
			return 0, 0, Errorf(CodeBadSize, "%s: payload of %d bytes not followed by a line end", f.Name, total)
		}
		end += 2
	default:
		return 0, 0, Errorf(CodeBadSize, "%s: payload of %d bytes not followed by a line end", f.Name, total)
	}
	payload := buf[lineEnd : lineEnd+total]
	if e.header {
		if hdr > p.limits.MaxHeader {
			return end, 0, Errorf(CodeBadHeader, "%d header bytes, max %d", hdr, p.limits.MaxHeader)
		}
		if !bytes.HasPrefix(payload[:hdr], headerPrefix) {
			return end, 0, Errorf(CodeBadHeader, "header block must start with NATS/1.0")
		}
		f.Header = payload[:hdr]
		payload = payload[hdr:]
	}
	f.Payload = payload
	return end, 0, nil
}

var headerPrefix = []byte("NATS/1.0")

func argCountErr(name []byte, s Spec, got int) *Error {
	if s.MinArgs == s.MaxArgs {
		return Errorf(CodeBadArgs, "%s takes %d arguments, got %d", name, s.MinArgs, got)
	}
	return Errorf(CodeBadArgs, "%s takes %d to %d arguments, got %d", name, s.MinArgs, s.MaxArgs, got)
}

// lookup finds name's entry without allocating: the verb is upper-cased into
// a stack array and the map is indexed with a string conversion the compiler
// does not copy.
func (p *Parser) lookup(name []byte) *entry {
	if len(name) == 0 || len(name) > maxVerbLen {
		return nil
	}
	var up [maxVerbLen]byte
	for i, c := range name {
		up[i] = upper(c)
	}
	return p.table.specs[string(up[:len(name)])]
}

func splitVerb(ctl []byte) (name, rest []byte) {
	i := 0
	for i < len(ctl) && (ctl[i] == ' ' || ctl[i] == '\t') {
		i++
	}
	j := i
	for j < len(ctl) && ctl[j] != ' ' && ctl[j] != '\t' {
		j++
	}
	name = ctl[i:j]
	for j < len(ctl) && (ctl[j] == ' ' || ctl[j] == '\t') {
		j++
	}
	return name, ctl[j:]
}

// splitArgs splits on runs of spaces and tabs into dst, which has capacity
// MaxArgs; ok is false if there are more.
func splitArgs(b []byte, dst [][]byte) ([][]byte, bool) {
	start := -1
	for i, c := range b {
		if c == ' ' || c == '\t' {
			if start >= 0 {
				if len(dst) == cap(dst) {
					return dst, false
				}
				dst = append(dst, b[start:i])
				start = -1
			}
		} else if start < 0 {
			start = i
		}
	}
	if start >= 0 {
		if len(dst) == cap(dst) {
			return dst, false
		}
		dst = append(dst, b[start:])
	}
	return dst, true
}

// maxSizeDigits caps a size so that parsing cannot overflow: 9 digits is
// just under 1 GB, far above any payload limit.
const maxSizeDigits = 9

// parseSize parses a non-negative decimal, or returns -1.
func parseSize(d []byte) int {
	if len(d) == 0 || len(d) > maxSizeDigits {
		return -1
	}
	n := 0
	for _, c := range d {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// ParseUint parses a non-negative decimal argument of at most 18 digits, or
// returns -1. Handlers use it for counts, ids and durations.
func ParseUint(d []byte) int64 {
	if len(d) == 0 || len(d) > 18 {
		return -1
	}
	var n int64
	for _, c := range d {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int64(c-'0')
	}
	return n
}
