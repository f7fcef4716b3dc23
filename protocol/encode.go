package protocol

import "strconv"

// Encoders append one frame to dst and return the extended slice, so the
// caller owns and reuses the buffer (one write per batch of frames).

var (
	crlf    = []byte("\r\n")
	okLine  = []byte("+OK\r\n")
	pingLn  = []byte("PING\r\n")
	pongLn  = []byte("PONG\r\n")
	errPre  = []byte("-ERR '")
	errPost = []byte("'\r\n")
)

// AppendOK appends +OK, with optional arguments.
func AppendOK(dst []byte, args ...[]byte) []byte {
	if len(args) == 0 {
		return append(dst, okLine...)
	}
	dst = append(dst, "+OK"...)
	for _, a := range args {
		dst = append(dst, ' ')
		dst = append(dst, a...)
	}
	return append(dst, crlf...)
}

// AppendOKNums appends "+OK" with the numbers and then suffix (if any) as
// its arguments: the stream-write and enqueue replies, without the
// argument slices AppendOK needs.
func AppendOKNums(dst []byte, suffix string, nums ...uint64) []byte {
	dst = append(dst, "+OK"...)
	for _, n := range nums {
		dst = strconv.AppendUint(append(dst, ' '), n, 10)
	}
	if suffix != "" {
		dst = append(append(dst, ' '), suffix...)
	}
	return append(dst, crlf...)
}

// AppendErr appends -ERR '<text>'. Single quotes and line ends inside text
// are replaced so the frame stays one line.
func AppendErr(dst []byte, text string) []byte {
	dst = append(dst, errPre...)
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch c {
		case '\'':
			c = '"'
		case '\r', '\n':
			c = ' '
		}
		dst = append(dst, c)
	}
	return append(dst, errPost...)
}

// AppendError appends e as an -ERR line.
func AppendError(dst []byte, e *Error) []byte { return AppendErr(dst, e.WireText()) }

// AppendPing appends PING.
func AppendPing(dst []byte) []byte { return append(dst, pingLn...) }

// AppendPong appends PONG.
func AppendPong(dst []byte) []byte { return append(dst, pongLn...) }

// AppendInfo appends INFO with an already-encoded JSON object.
func AppendInfo(dst, json []byte) []byte {
	dst = append(dst, "INFO "...)
	dst = append(dst, json...)
	return append(dst, crlf...)
}

// AppendMsg appends a MSG (hdr == nil) or HMSG delivery. size, when not nil,
// is the publisher's own size digits, reused to save formatting an int.
func AppendMsg(dst, subject, sid, reply, hdr, payload []byte) []byte {
	if hdr != nil {
		dst = append(dst, "HMSG "...)
	} else {
		dst = append(dst, "MSG "...)
	}
	dst = append(dst, subject...)
	dst = append(dst, ' ')
	dst = append(dst, sid...)
	return appendTail(dst, reply, hdr, payload)
}

// AppendPub appends a PUB (hdr == nil) or HPUB command.
func AppendPub(dst []byte, subject, reply string, hdr, payload []byte) []byte {
	if hdr != nil {
		dst = append(dst, "HPUB "...)
	} else {
		dst = append(dst, "PUB "...)
	}
	dst = append(dst, subject...)
	return appendTail(dst, []byte(reply), hdr, payload)
}

// AppendRes appends a RES (hdr == nil) or HRES reply with arguments.
func AppendRes(dst []byte, args [][]byte, hdr, payload []byte) []byte {
	if hdr != nil {
		dst = append(dst, "HRES"...)
	} else {
		dst = append(dst, "RES"...)
	}
	for _, a := range args {
		dst = append(dst, ' ')
		dst = append(dst, a...)
	}
	return appendTail(dst, nil, hdr, payload)
}

// appendTail writes " [reply] [#hdr] #total\r\n<hdr><payload>\r\n".
func appendTail(dst, reply, hdr, payload []byte) []byte {
	if len(reply) > 0 {
		dst = append(dst, ' ')
		dst = append(dst, reply...)
	}
	dst = append(dst, ' ')
	if hdr != nil {
		dst = strconv.AppendInt(dst, int64(len(hdr)), 10)
		dst = append(dst, ' ')
	}
	dst = strconv.AppendInt(dst, int64(len(hdr)+len(payload)), 10)
	dst = append(dst, crlf...)
	dst = append(dst, hdr...)
	dst = append(dst, payload...)
	return append(dst, crlf...)
}

// AppendSub appends SUB <subject> [queue] <sid>.
func AppendSub(dst []byte, subject, queue, sid string) []byte {
	dst = append(dst, "SUB "...)
	dst = append(dst, subject...)
	if queue != "" {
		dst = append(dst, ' ')
		dst = append(dst, queue...)
	}
	dst = append(dst, ' ')
	dst = append(dst, sid...)
	return append(dst, crlf...)
}

// AppendUnsub appends UNSUB <sid> [max]; max <= 0 means none.
func AppendUnsub(dst []byte, sid string, max int) []byte {
	dst = append(dst, "UNSUB "...)
	dst = append(dst, sid...)
	if max > 0 {
		dst = append(dst, ' ')
		dst = strconv.AppendInt(dst, int64(max), 10)
	}
	return append(dst, crlf...)
}

// AppendCommand appends a NoPayload engine command: VERB args...
func AppendCommand(dst []byte, verb string, args ...string) []byte {
	dst = append(dst, verb...)
	for _, a := range args {
		dst = append(dst, ' ')
		dst = append(dst, a...)
	}
	return append(dst, crlf...)
}
