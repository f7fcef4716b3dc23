package protocol

// The verbs of NATS core, shared by the server's table and the clients'.
// Engine verbs (KV, queues, streams) take IDs from FirstEngineVerb up and
// are registered by the server.
const (
	VerbPing Verb = iota + 1
	VerbPong
	VerbConnect
	VerbInfo
	VerbPub
	VerbHPub
	VerbSub
	VerbUnsub
	VerbMsg
	VerbHMsg
	VerbOK
	VerbErr
	VerbRes
	VerbHRes

	// FirstEngineVerb is the first ID free for engine verbs.
	FirstEngineVerb Verb = 64
)

// CoreServerSpecs are the client→server verbs of NATS core.
//
//	PUB <subject> [reply] <#bytes>            HPUB <subject> [reply] <#hdr> <#total>
//	SUB <subject> [queue] <sid>               UNSUB <sid> [max]
//	CONNECT {json}   PING   PONG
func CoreServerSpecs() []Spec {
	return []Spec{
		{Name: "PING", ID: VerbPing},
		{Name: "PONG", ID: VerbPong},
		{Name: "CONNECT", ID: VerbConnect, Shape: Raw},
		{Name: "PUB", ID: VerbPub, Shape: Sized, MinArgs: 1, MaxArgs: 2, HeaderID: VerbHPub},
		{Name: "SUB", ID: VerbSub, MinArgs: 2, MaxArgs: 3},
		{Name: "UNSUB", ID: VerbUnsub, MinArgs: 1, MaxArgs: 2},
	}
}

// ClientSpecs are the server→client frames: NATS core's, plus FlowMesh's
// replies to engine verbs.
//
//	INFO {json}   PING   PONG   +OK [args...]   -ERR '<text>'
//	MSG <subject> <sid> [reply] <#bytes>      HMSG <subject> <sid> [reply] <#hdr> <#total>
//	RES [args...] <#bytes>                    HRES [args...] <#hdr> <#total>
func ClientSpecs() []Spec {
	return []Spec{
		{Name: "INFO", ID: VerbInfo, Shape: Raw},
		{Name: "PING", ID: VerbPing},
		{Name: "PONG", ID: VerbPong},
		{Name: "+OK", ID: VerbOK, MaxArgs: MaxArgs},
		{Name: "-ERR", ID: VerbErr, Shape: Raw},
		{Name: "MSG", ID: VerbMsg, Shape: Sized, MinArgs: 2, MaxArgs: 3, HeaderID: VerbHMsg},
		{Name: "RES", ID: VerbRes, Shape: Sized, MaxArgs: MaxArgs - 2, HeaderID: VerbHRes},
	}
}
