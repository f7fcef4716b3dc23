package protocol

import "strconv"

// Queue verbs: queues, jobs, workers. docs/protocol.md has the grammar.
const (
	VerbQCreate Verb = FirstQueueVerb + iota
	VerbQAlter
	VerbQDelete
	VerbQList
	VerbQInfo
	VerbQPut
	VerbHQPut
	VerbQGet
	VerbQAck
	VerbQNack
	VerbQTouch
	VerbQBrowse
	VerbQRedrive
	VerbQPurge
	VerbQPause
	VerbQResume
	VerbQWorker
	VerbQHb
	VerbQWorkers
	VerbQSub
	VerbQUnsub

	// Server→client queue frames.
	VerbJob
	VerbHJob
	VerbQMsg
	VerbHQMsg
	VerbQClosed

	// FirstKVVerb is where the next engine's verbs start.
	FirstKVVerb Verb = FirstQueueVerb + 32
)

// QueueSpecs are the client→server queue verbs.
//
//	QCREATE <queue> [k=v...]      QALTER <queue> k=v...    QDELETE <queue>    QLIST    QINFO <queue>
//	QPUT <queue> [delay=D] [at=T] [priority=N] [key=K] [max_attempts=N] <#bytes>
//	HQPUT <queue> [...] <#hdr> <#total>
//	QGET <queue> [max=N] [wait=D] [visibility=D]
//	QACK <queue> <id> <attempt>       QTOUCH <queue> <id> <attempt> [ext=D]
//	QNACK <queue> <id> <attempt> [delay=D|fail] <#bytes>   (payload: the error text)
//	QBROWSE <queue> <ready|delayed|in_flight|dead> [from=ID] [limit=N]
//	QREDRIVE <queue> <id|all>   QPURGE <queue> [dead]   QPAUSE <queue>   QRESUME <queue>
//	QWORKER <name> <queue[,queue...]> [concurrency=N]   QHB   QWORKERS
//	QSUB <queue> <sid> [window=N] [visibility=D]   QUNSUB <sid>
func QueueSpecs() []Spec {
	return []Spec{
		{Name: "QCREATE", ID: VerbQCreate, MinArgs: 1, MaxArgs: MaxArgs},
		{Name: "QALTER", ID: VerbQAlter, MinArgs: 2, MaxArgs: MaxArgs},
		{Name: "QDELETE", ID: VerbQDelete, MinArgs: 1, MaxArgs: 1},
		{Name: "QLIST", ID: VerbQList},
		{Name: "QINFO", ID: VerbQInfo, MinArgs: 1, MaxArgs: 1},
		{Name: "QPUT", ID: VerbQPut, Shape: Sized, MinArgs: 1, MaxArgs: 6, HeaderID: VerbHQPut},
		{Name: "QGET", ID: VerbQGet, MinArgs: 1, MaxArgs: 4},
		{Name: "QACK", ID: VerbQAck, MinArgs: 3, MaxArgs: 3},
		{Name: "QNACK", ID: VerbQNack, Shape: Sized, MinArgs: 3, MaxArgs: 4},
		{Name: "QTOUCH", ID: VerbQTouch, MinArgs: 3, MaxArgs: 4},
		{Name: "QBROWSE", ID: VerbQBrowse, MinArgs: 2, MaxArgs: 4},
		{Name: "QREDRIVE", ID: VerbQRedrive, MinArgs: 2, MaxArgs: 2},
		{Name: "QPURGE", ID: VerbQPurge, MinArgs: 1, MaxArgs: 2},
		{Name: "QPAUSE", ID: VerbQPause, MinArgs: 1, MaxArgs: 1},
		{Name: "QRESUME", ID: VerbQResume, MinArgs: 1, MaxArgs: 1},
		{Name: "QWORKER", ID: VerbQWorker, MinArgs: 2, MaxArgs: 3},
		{Name: "QHB", ID: VerbQHb},
		{Name: "QWORKERS", ID: VerbQWorkers},
		{Name: "QSUB", ID: VerbQSub, MinArgs: 2, MaxArgs: 4},
		{Name: "QUNSUB", ID: VerbQUnsub, MinArgs: 1, MaxArgs: 1},
	}
}

// QueueClientSpecs are the server→client queue frames.
//
//	JOB <queue> <id> <attempt> <enqueued-ns> <#bytes>
//	HJOB <queue> <id> <attempt> <enqueued-ns> <#hdr> <#total>
//	QMSG <sid> <queue> <id> <attempt> <enqueued-ns> <#bytes>          (pushed to a QSUB)
//	HQMSG <sid> <queue> <id> <attempt> <enqueued-ns> <#hdr> <#total>
//	QCLOSED <sid> <reason...>
func QueueClientSpecs() []Spec {
	return []Spec{
		{Name: "JOB", ID: VerbJob, Shape: Sized, MinArgs: 4, MaxArgs: 4, HeaderID: VerbHJob},
		{Name: "QMSG", ID: VerbQMsg, Shape: Sized, MinArgs: 5, MaxArgs: 5, HeaderID: VerbHQMsg},
		{Name: "QCLOSED", ID: VerbQClosed, MinArgs: 1, MaxArgs: MaxArgs},
	}
}

// AppendJob appends a JOB (hdr == nil) or HJOB frame.
func AppendJob(dst []byte, queue string, id uint64, attempt int, enqueued int64, hdr, payload []byte) []byte {
	if hdr != nil {
		dst = append(dst, "HJOB "...)
	} else {
		dst = append(dst, "JOB "...)
	}
	return appendJobTail(dst, queue, id, attempt, enqueued, hdr, payload)
}

// AppendQMsg appends a QMSG (hdr == nil) or HQMSG frame: a job pushed to
// the consumer sid.
func AppendQMsg(dst, sid []byte, queue string, id uint64, attempt int, enqueued int64, hdr, payload []byte) []byte {
	if hdr != nil {
		dst = append(dst, "HQMSG "...)
	} else {
		dst = append(dst, "QMSG "...)
	}
	dst = append(dst, sid...)
	dst = append(dst, ' ')
	return appendJobTail(dst, queue, id, attempt, enqueued, hdr, payload)
}

func appendJobTail(dst []byte, queue string, id uint64, attempt int, enqueued int64, hdr, payload []byte) []byte {
	dst = append(dst, queue...)
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, id, 10)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, int64(attempt), 10)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, enqueued, 10)
	return appendTail(dst, nil, hdr, payload)
}
