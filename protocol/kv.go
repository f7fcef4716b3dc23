package protocol

// KV verbs. The native port speaks the same KV command language as the
// Redis-compatible port (one command table behind both): KV carries a
// command as tokens on its line, for nc; KVB carries it as a RESP array in
// its payload, binary-safe, for SDKs. The reply is a RES frame whose
// payload is the command's RESP3 reply, or -ERR for a refused command.
//
//	KV <command> [arg...]          (up to MaxArgs tokens; no spaces inside one)
//	KVB <#bytes>                   (payload: *N\r\n$len\r\narg\r\n...)
const (
	VerbKV Verb = FirstKVVerb + iota
	VerbKVB
)

// KVSpecs are the client→server KV verbs.
func KVSpecs() []Spec {
	return []Spec{
		{Name: "KV", ID: VerbKV, MinArgs: 1, MaxArgs: MaxArgs},
		{Name: "KVB", ID: VerbKVB, Shape: Sized},
	}
}
