package protocol

import "strconv"

// Stream verbs: topics, writes, reads and consumer groups. The server
// registers StreamSpecs with its engine handlers; clients encode them with
// AppendCommand and the Sized encoders. docs/protocol.md has the grammar.
const (
	VerbTCreate Verb = FirstEngineVerb + iota
	VerbTAlter
	VerbTDelete
	VerbTList
	VerbTInfo
	VerbSWrite
	VerbHSWrite
	VerbSRead
	VerbSSeek
	VerbSSub
	VerbSAck
	VerbSCommit
	VerbSHb
	VerbSUnsub
	VerbGInfo
	VerbGList
	VerbGReset
	VerbGDelete

	// Server→client stream frames.
	VerbEvt
	VerbHEvt
	VerbSAssign
	VerbSClosed

	// FirstQueueVerb is where the next engine's verbs start.
	FirstQueueVerb Verb = FirstEngineVerb + 32
)

// StreamSpecs are the client→server stream verbs.
//
//	TCREATE <topic> [k=v...]          TALTER <topic> k=v...     TDELETE <topic>
//	TLIST                             TINFO <topic>
//	SWRITE <topic> [k=v...] <#bytes>  HSWRITE <topic> [k=v...] <#hdr> <#total>
//	SREAD <topic> <partition> <offset> [k=v...]
//	SSEEK <topic> <partition> <earliest|latest|time=T>
//	SSUB <topic> <group> <sid> [k=v...]   SACK <sid> [n]   SHB <sid>   SUNSUB <sid>
//	SCOMMIT <sid> <partition> <offset>
//	GINFO <topic> <group>   GLIST <topic>   GDELETE <topic> <group>
//	GRESET <topic> <group> <earliest|latest|offset=N|time=T> [partition]
func StreamSpecs() []Spec {
	return []Spec{
		{Name: "TCREATE", ID: VerbTCreate, MinArgs: 1, MaxArgs: MaxArgs},
		{Name: "TALTER", ID: VerbTAlter, MinArgs: 2, MaxArgs: MaxArgs},
		{Name: "TDELETE", ID: VerbTDelete, MinArgs: 1, MaxArgs: 1},
		{Name: "TLIST", ID: VerbTList},
		{Name: "TINFO", ID: VerbTInfo, MinArgs: 1, MaxArgs: 1},
		{Name: "SWRITE", ID: VerbSWrite, Shape: Sized, MinArgs: 1, MaxArgs: 6, HeaderID: VerbHSWrite},
		{Name: "SREAD", ID: VerbSRead, MinArgs: 3, MaxArgs: 5},
		{Name: "SSEEK", ID: VerbSSeek, MinArgs: 3, MaxArgs: 3},
		{Name: "SSUB", ID: VerbSSub, MinArgs: 3, MaxArgs: MaxArgs},
		{Name: "SACK", ID: VerbSAck, MinArgs: 1, MaxArgs: 2},
		{Name: "SCOMMIT", ID: VerbSCommit, MinArgs: 3, MaxArgs: 3},
		{Name: "SHB", ID: VerbSHb, MinArgs: 1, MaxArgs: 1},
		{Name: "SUNSUB", ID: VerbSUnsub, MinArgs: 1, MaxArgs: 1},
		{Name: "GINFO", ID: VerbGInfo, MinArgs: 2, MaxArgs: 2},
		{Name: "GLIST", ID: VerbGList, MinArgs: 1, MaxArgs: 1},
		{Name: "GRESET", ID: VerbGReset, MinArgs: 3, MaxArgs: 4},
		{Name: "GDELETE", ID: VerbGDelete, MinArgs: 2, MaxArgs: 2},
	}
}

// StreamClientSpecs are the server→client stream frames.
//
//	EVT <sid> <topic> <partition> <offset> <unix-ns> <key|-> <#bytes>
//	HEVT <sid> <topic> <partition> <offset> <unix-ns> <key|-> <#hdr> <#total>
//	SASSIGN <sid> <generation> <p,p,...|->
//	SCLOSED <sid> <reason...>
func StreamClientSpecs() []Spec {
	return []Spec{
		{Name: "EVT", ID: VerbEvt, Shape: Sized, MinArgs: 6, MaxArgs: 6, HeaderID: VerbHEvt},
		{Name: "SASSIGN", ID: VerbSAssign, MinArgs: 3, MaxArgs: 3},
		{Name: "SCLOSED", ID: VerbSClosed, MinArgs: 1, MaxArgs: MaxArgs},
	}
}

// NoKey stands for "no key" in an EVT frame's key position.
const NoKey = "-"

// ReadSid is the sid of the EVT frames that answer an SREAD.
const ReadSid = "-"

// AppendEvt appends an EVT (hdr == nil) or HEVT frame.
func AppendEvt(dst, sid []byte, topic string, partition int, offset uint64, ts int64, key, hdr, payload []byte) []byte {
	if hdr != nil {
		dst = append(dst, "HEVT "...)
	} else {
		dst = append(dst, "EVT "...)
	}
	dst = append(dst, sid...)
	dst = append(dst, ' ')
	dst = append(dst, topic...)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, int64(partition), 10)
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, offset, 10)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, ts, 10)
	dst = append(dst, ' ')
	if len(key) == 0 {
		dst = append(dst, NoKey...)
	} else {
		dst = append(dst, key...)
	}
	return appendTail(dst, nil, hdr, payload)
}

// AppendSized appends a Sized command: VERB args... [#hdr] #total, then the
// header block and payload. hdr != nil selects the H form ("H" + verb).
func AppendSized(dst []byte, verb string, args []string, hdr, payload []byte) []byte {
	if hdr != nil {
		dst = append(dst, 'H')
	}
	dst = append(dst, verb...)
	for _, a := range args {
		dst = append(dst, ' ')
		dst = append(dst, a...)
	}
	return appendTail(dst, nil, hdr, payload)
}

// AppendSWrite appends an event write, [H]SWRITE <topic> [key=<key>]
// [partition=<p>] [<producer> seq=<seq>], then sizes, header and payload as
// AppendSized; producer is the whole "producer=<id>" argument ("" for
// none, and then no seq). The numbers are formatted in place: the Go SDK
// sends one per event, and building "seq=N" as a string cost two
// allocations each.
func AppendSWrite(dst []byte, topic, key string, partition int, producer string, seq uint64, hdr, payload []byte) []byte {
	if hdr != nil {
		dst = append(dst, 'H')
	}
	dst = append(dst, "SWRITE "...)
	dst = append(dst, topic...)
	if key != "" {
		dst = append(dst, " key="...)
		dst = append(dst, key...)
	}
	if partition >= 0 {
		dst = append(dst, " partition="...)
		dst = strconv.AppendInt(dst, int64(partition), 10)
	}
	if producer != "" {
		dst = append(dst, ' ')
		dst = append(dst, producer...)
		dst = append(dst, " seq="...)
		dst = strconv.AppendUint(dst, seq, 10)
	}
	return appendTail(dst, nil, hdr, payload)
}

// ValidToken reports whether s can travel as one argument: non-empty, at
// most max bytes, printable ASCII with no space. Topic, group and key names
// must be tokens.
func ValidToken(s []byte, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for _, c := range s {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}
