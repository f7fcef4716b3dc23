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

	// Server→client queue frames.
	VerbJob
	VerbHJob

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
	}
}

// QueueClientSpecs are the server→client queue frames.
//
//	JOB <queue> <id> <attempt> <enqueued-ns> <#bytes>
//	HJOB <queue> <id> <attempt> <enqueued-ns> <#hdr> <#total>
func QueueClientSpecs() []Spec {
	return []Spec{{Name: "JOB", ID: VerbJob, Shape: Sized, MinArgs: 4, MaxArgs: 4, HeaderID: VerbHJob}}
}

// AppendJob appends a JOB (hdr == nil) or HJOB frame.
func AppendJob(dst []byte, queue string, id uint64, attempt int, enqueued int64, hdr, payload []byte) []byte {
	if hdr != nil {
		dst = append(dst, "HJOB "...)
	} else {
		dst = append(dst, "JOB "...)
	}
	dst = append(dst, queue...)
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, id, 10)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, int64(attempt), 10)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, enqueued, 10)
	return appendTail(dst, nil, hdr, payload)
}
