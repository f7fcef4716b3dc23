package server

import (
	"bytes"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/flowmesh/flowmesh/kv"
	"github.com/flowmesh/flowmesh/protocol/resp"
)

// respCommands is the Redis port's command table. Replies and errors
// follow Redis 7 (the comparison test runs one script against both).
var respCommands map[string]respCmd

func init() {
	respCommands = map[string]respCmd{
		// Connection and server.
		"ping":     {-1, respPing, false},
		"echo":     {2, func(c *respConn, a [][]byte) { c.w.Bulk(a[1]) }, false},
		"select":   {2, respSelect, false},
		"hello":    {-1, respHello, false},
		"client":   {-2, respClient, false},
		"command":  {-1, respCommand, false},
		"info":     {-1, respInfo, false},
		"config":   {-2, respConfig, false},
		"dbsize":   {1, func(c *respConn, a [][]byte) { c.w.Int(c.srv.kv.DBSize()) }, false},
		"flushdb":  {-1, respFlush, true},
		"flushall": {-1, respFlush, true},
		"time":     {1, respTime, false},
		// Strings.
		"set":         {-3, respSet, true},
		"setnx":       {3, func(c *respConn, a [][]byte) { respSetFlags(c, a[1], a[2], kv.SetOpts{NX: true}, true) }, true},
		"setex":       {4, func(c *respConn, a [][]byte) { respSetEx(c, a, time.Second) }, true},
		"psetex":      {4, func(c *respConn, a [][]byte) { respSetEx(c, a, time.Millisecond) }, true},
		"get":         {2, respGet, false},
		"getdel":      {2, respGetDel, true},
		"getex":       {-2, respGetEx, true},
		"getset":      {3, func(c *respConn, a [][]byte) { respSetFlags(c, a[1], a[2], kv.SetOpts{Get: true}, false) }, true},
		"mget":        {-2, respMGet, false},
		"mset":        {-3, func(c *respConn, a [][]byte) { respMSet(c, a, false) }, true},
		"msetnx":      {-3, func(c *respConn, a [][]byte) { respMSet(c, a, true) }, true},
		"incr":        {2, func(c *respConn, a [][]byte) { respIncr(c, a[1], 1) }, true},
		"decr":        {2, func(c *respConn, a [][]byte) { respIncr(c, a[1], -1) }, true},
		"incrby":      {3, func(c *respConn, a [][]byte) { respIncrArg(c, a, 1) }, true},
		"decrby":      {3, func(c *respConn, a [][]byte) { respIncrArg(c, a, -1) }, true},
		"incrbyfloat": {3, respIncrFloat, true},
		"append":      {3, respAppend, true},
		"strlen":      {2, respStrLen, false},
		// Keys.
		"del":       {-2, respDel, true},
		"unlink":    {-2, respDel, true},
		"exists":    {-2, respExists, false},
		"type":      {2, respType, false},
		"rename":    {3, func(c *respConn, a [][]byte) { respRename(c, a, false) }, true},
		"renamenx":  {3, func(c *respConn, a [][]byte) { respRename(c, a, true) }, true},
		"expire":    {-3, func(c *respConn, a [][]byte) { respExpire(c, a, time.Second, false) }, true},
		"pexpire":   {-3, func(c *respConn, a [][]byte) { respExpire(c, a, time.Millisecond, false) }, true},
		"expireat":  {-3, func(c *respConn, a [][]byte) { respExpire(c, a, time.Second, true) }, true},
		"pexpireat": {-3, func(c *respConn, a [][]byte) { respExpire(c, a, time.Millisecond, true) }, true},
		"ttl":       {2, func(c *respConn, a [][]byte) { respTTL(c, a[1], time.Second) }, false},
		"pttl":      {2, func(c *respConn, a [][]byte) { respTTL(c, a[1], time.Millisecond) }, false},
		"persist":   {2, respPersist, true},
		"scan":      {-2, respScan, false},
		"keys":      {2, respKeys, false},
		// Hashes.
		"hset":         {-4, func(c *respConn, a [][]byte) { respHSet(c, a, false) }, true},
		"hmset":        {-4, func(c *respConn, a [][]byte) { respHSet(c, a, true) }, true},
		"hsetnx":       {4, respHSetNX, true},
		"hget":         {3, respHGet, false},
		"hmget":        {-3, respHMGet, false},
		"hdel":         {-3, respHDel, true},
		"hgetall":      {2, func(c *respConn, a [][]byte) { respHGetAll(c, a[1], true, true) }, false},
		"hkeys":        {2, func(c *respConn, a [][]byte) { respHGetAll(c, a[1], true, false) }, false},
		"hvals":        {2, func(c *respConn, a [][]byte) { respHGetAll(c, a[1], false, true) }, false},
		"hincrby":      {4, respHIncrBy, true},
		"hincrbyfloat": {4, respHIncrByFloat, true},
		"hlen":         {2, respHLen, false},
		"hexists":      {3, respHExists, false},
		"hscan":        {-3, func(c *respConn, a [][]byte) { respMemberScan(c, a, kv.TypeHash) }, false},
		// Sets.
		"sadd":       {-3, respSAdd, true},
		"srem":       {-3, respSRem, true},
		"smembers":   {2, respSMembers, false},
		"sismember":  {3, respSIsMember, false},
		"scard":      {2, respSCard, false},
		"smismember": {-3, respSMIsMember, false},
		"sinter":     {-2, func(c *respConn, a [][]byte) { respSCombine(c, a, kv.SetInter) }, false},
		"sunion":     {-2, func(c *respConn, a [][]byte) { respSCombine(c, a, kv.SetUnion) }, false},
		"sdiff":      {-2, func(c *respConn, a [][]byte) { respSCombine(c, a, kv.SetDiff) }, false},
		"sscan":      {-3, func(c *respConn, a [][]byte) { respMemberScan(c, a, kv.TypeSet) }, false},
		// Sorted sets.
		"zadd":             {-4, respZAdd, true},
		"zrem":             {-3, respZRem, true},
		"zscore":           {3, respZScore, false},
		"zincrby":          {4, respZIncrBy, true},
		"zcard":            {2, respZCard, false},
		"zrank":            {3, func(c *respConn, a [][]byte) { respZRank(c, a, false) }, false},
		"zrevrank":         {3, func(c *respConn, a [][]byte) { respZRank(c, a, true) }, false},
		"zrange":           {-4, func(c *respConn, a [][]byte) { respZRange(c, a, "", false) }, false},
		"zrevrange":        {-4, func(c *respConn, a [][]byte) { respZRange(c, a, "index", true) }, false},
		"zrangebyscore":    {-4, func(c *respConn, a [][]byte) { respZRange(c, a, "score", false) }, false},
		"zrevrangebyscore": {-4, func(c *respConn, a [][]byte) { respZRange(c, a, "score", true) }, false},
		"zrangebylex":      {-4, func(c *respConn, a [][]byte) { respZRange(c, a, "lex", false) }, false},
		"zrevrangebylex":   {-4, func(c *respConn, a [][]byte) { respZRange(c, a, "lex", true) }, false},
		"zcount":           {4, respZCount, false},
		"zlexcount":        {4, respZLexCount, false},
		"zmscore":          {-3, respZMScore, false},
		"zremrangebyrank":  {4, func(c *respConn, a [][]byte) { respZRemRange(c, a, "index") }, true},
		"zremrangebyscore": {4, func(c *respConn, a [][]byte) { respZRemRange(c, a, "score") }, true},
		"zremrangebylex":   {4, func(c *respConn, a [][]byte) { respZRemRange(c, a, "lex") }, true},
		"zpopmin":          {-2, func(c *respConn, a [][]byte) { respZPop(c, a, false) }, true},
		"zpopmax":          {-2, func(c *respConn, a [][]byte) { respZPop(c, a, true) }, true},
		"zscan":            {-3, func(c *respConn, a [][]byte) { respMemberScan(c, a, kv.TypeZSet) }, false},
	}
}

var (
	errSyntax    = "ERR syntax error"
	errNotInt    = "ERR value is not an integer or out of range"
	errNotFloat  = "ERR value is not a valid float"
	errMinMax    = "ERR min or max is not a float"
	errLexMinMax = "ERR min or max not valid string range item"
)

func lower(b []byte) string { return strings.ToLower(string(b)) }

func respInt(b []byte) (int64, bool) { return kv.ParseInt(b) }

// Connection and server.

func respPing(c *respConn, a [][]byte) {
	switch len(a) {
	case 1:
		c.w.Simple("PONG")
	case 2:
		c.w.Bulk(a[1])
	default:
		c.w.Error("ERR wrong number of arguments for 'ping' command")
	}
}

func respSelect(c *respConn, a [][]byte) {
	n, ok := respInt(a[1])
	switch {
	case !ok:
		c.w.Error(errNotInt)
	case n != 0:
		c.w.Error("ERR DB index is out of range") // one database, as in Redis Cluster
	default:
		c.w.OK()
	}
}

func respHello(c *respConn, a [][]byte) {
	proto := 2
	if c.w.RESP3 {
		proto = 3
	}
	i := 1
	if len(a) > 1 {
		n, ok := respInt(a[1])
		if !ok {
			c.w.Error("ERR Protocol version is not an integer or out of range")
			return
		}
		if n != 2 && n != 3 {
			c.w.Error("NOPROTO unsupported protocol version")
			return
		}
		proto, i = int(n), 2
	}
	for ; i < len(a); i++ {
		switch lower(a[i]) {
		case "auth":
			i += 2 // no ACLs: any credentials are accepted, as with no requirepass
		case "setname":
			if i+1 < len(a) {
				c.name = string(a[i+1])
				i++
			}
		default:
			c.w.Error("ERR Syntax error in HELLO option '" + string(a[i]) + "'")
			return
		}
	}
	c.w.RESP3 = proto == 3
	c.w.Map(7)
	c.w.BulkString("server")
	c.w.BulkString("redis")
	c.w.BulkString("version")
	c.w.BulkString(redisVersion)
	c.w.BulkString("proto")
	c.w.Int(int64(proto))
	c.w.BulkString("id")
	c.w.Int(c.id)
	c.w.BulkString("mode")
	c.w.BulkString("standalone")
	c.w.BulkString("role")
	c.w.BulkString("master")
	c.w.BulkString("modules")
	c.w.Array(0)
}

// redisVersion is the Redis version the port claims: clients switch
// features on it.
const redisVersion = "7.0.0"

func respClient(c *respConn, a [][]byte) {
	switch lower(a[1]) {
	case "setname":
		if len(a) != 3 {
			c.w.Error("ERR wrong number of arguments for 'client|setname' command")
			return
		}
		c.name = string(a[2])
		c.w.OK()
	case "getname":
		if c.name == "" {
			c.w.Null()
			return
		}
		c.w.BulkString(c.name)
	case "id":
		c.w.Int(c.id)
	case "setinfo":
		c.w.OK() // lib-name/lib-ver: accepted, not shown anywhere yet
	case "info":
		c.w.Verbatim("id=" + strconv.FormatInt(c.id, 10) + " addr=" + c.conn.RemoteAddr().String() + " name=" + c.name + " db=0\n")
	default:
		c.w.Error("ERR unknown subcommand '" + string(a[1]) + "'. Try CLIENT HELP.")
	}
}

func respCommand(c *respConn, a [][]byte) {
	if len(a) > 1 {
		switch lower(a[1]) {
		case "count":
			c.w.Int(int64(len(respCommands)))
			return
		case "docs":
			c.w.Map(0)
			return
		case "info":
			c.w.Array(len(a) - 2)
			for _, n := range a[2:] {
				if cmd, ok := respCommands[lower(n)]; ok {
					commandInfo(c, lower(n), cmd)
				} else {
					c.w.NullArray()
				}
			}
			return
		}
		c.w.Error("ERR unknown subcommand '" + string(a[1]) + "'. Try COMMAND HELP.")
		return
	}
	c.w.Array(len(respCommands))
	for name, cmd := range respCommands {
		commandInfo(c, name, cmd)
	}
}

// commandInfo writes COMMAND's entry: name, arity, flags, first key, last
// key, step (enough for clients that route or inspect commands).
func commandInfo(c *respConn, name string, cmd respCmd) {
	c.w.Array(6)
	c.w.BulkString(name)
	c.w.Int(int64(cmd.arity))
	if cmd.write {
		c.w.Set(1)
		c.w.Simple("write")
	} else {
		c.w.Set(1)
		c.w.Simple("readonly")
	}
	first, last := int64(1), int64(1)
	switch name {
	case "ping", "echo", "select", "hello", "client", "command", "info", "config", "dbsize", "flushdb", "flushall", "time", "scan", "keys":
		first, last = 0, 0
	case "del", "unlink", "exists", "mget", "sinter", "sunion", "sdiff":
		last = -1
	case "rename", "renamenx":
		last = 2
	}
	c.w.Int(first)
	c.w.Int(last)
	c.w.Int(1)
}

func respInfo(c *respConn, a [][]byte) {
	st := c.srv.kv.Stats()
	var b strings.Builder
	b.WriteString("# Server\r\nredis_version:" + redisVersion + "\r\nflowmesh_version:" + Version + "\r\nredis_mode:standalone\r\n")
	b.WriteString("tcp_port:" + portOf(c.conn.LocalAddr().String()) + "\r\n\r\n")
	b.WriteString("# Clients\r\nconnected_clients:" + strconv.FormatInt(c.srv.resp.Stats().Conns, 10) + "\r\n\r\n")
	b.WriteString("# Stats\r\nexpired_keys:" + strconv.FormatUint(st.Expired, 10) + "\r\n\r\n")
	b.WriteString("# Keyspace\r\n")
	if st.Keys > 0 {
		b.WriteString("db0:keys=" + strconv.FormatInt(st.Keys, 10) + ",expires=0,avg_ttl=0\r\n")
	}
	c.w.Verbatim(b.String())
}

func portOf(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i >= 0 {
		return addr[i+1:]
	}
	return addr
}

// respConfigParams are the settings CONFIG GET shows, read-only, in
// Redis' names and terms: what clients look at (redis-benchmark reads save
// and appendonly; job libraries such as Bull and Sidekiq warn unless
// maxmemory-policy is noeviction, and FlowMesh never evicts).
func (s *Server) respConfigParams() [][2]string {
	appendonly, fsync := "yes", "everysec" // interval: every 10 ms by default, the closest Redis term
	switch {
	case s.cfg.InMemory:
		appendonly, fsync = "no", "no"
	case s.cfg.Fsync == "always":
		fsync = "always"
	case s.cfg.Fsync == "none":
		fsync = "no"
	}
	dir := s.cfg.DataDir
	if s.cfg.InMemory {
		dir = ""
	}
	return [][2]string{
		{"appendfsync", fsync}, {"appendonly", appendonly}, {"databases", "1"}, {"dir", dir},
		{"maxmemory", "0"}, {"maxmemory-policy", "noeviction"}, {"port", portOf(s.cfg.RESPAddr)},
		{"save", ""}, {"timeout", "0"},
	}
}

func respConfig(c *respConn, a [][]byte) {
	switch lower(a[1]) {
	case "get":
		// Read-only: the node is configured by its file and flags.
		if len(a) < 3 {
			c.w.Error("ERR wrong number of arguments for 'config|get' command")
			return
		}
		var match [][2]string
		for _, param := range c.srv.respConfigParams() {
			for _, pat := range a[2:] {
				if kv.Glob(bytes.ToLower(pat), []byte(param[0])) {
					match = append(match, param)
					break
				}
			}
		}
		c.w.Map(len(match))
		for _, param := range match {
			c.w.BulkString(param[0])
			c.w.BulkString(param[1])
		}
	case "set":
		c.w.Error("ERR CONFIG SET is not supported: FlowMesh is configured by its config file and flags")
	case "resetstat":
		c.w.OK()
	default:
		c.w.Error("ERR unknown subcommand '" + string(a[1]) + "'. Try CONFIG HELP.")
	}
}

func respFlush(c *respConn, a [][]byte) {
	if len(a) > 2 || (len(a) == 2 && lower(a[1]) != "sync" && lower(a[1]) != "async") {
		c.w.Error(errSyntax)
		return
	}
	if err := c.srv.kv.FlushDB(); err != nil {
		c.fail(err)
		return
	}
	c.w.OK()
}

func respTime(c *respConn, _ [][]byte) {
	now := time.Now()
	c.w.Array(2)
	c.w.BulkString(strconv.FormatInt(now.Unix(), 10))
	c.w.BulkString(strconv.FormatInt(int64(now.Nanosecond()/1000), 10))
}

// Strings.

// respSet: SET key value [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL]
func respSet(c *respConn, a [][]byte) {
	var o kv.SetOpts
	expiry := false
	for i := 3; i < len(a); i++ {
		opt := lower(a[i])
		switch opt {
		case "nx":
			o.NX = true
		case "xx":
			o.XX = true
		case "get":
			o.Get = true
		case "keepttl":
			if expiry {
				c.w.Error(errSyntax)
				return
			}
			o.KeepTTL = true
		case "ex", "px", "exat", "pxat":
			if expiry || o.KeepTTL || i+1 >= len(a) {
				c.w.Error(errSyntax)
				return
			}
			n, ok := respInt(a[i+1])
			if !ok {
				c.w.Error(errNotInt)
				return
			}
			at, ok := expiryAt(opt, n)
			if !ok {
				c.w.Error("ERR invalid expire time in 'set' command")
				return
			}
			o.ExpireAt, expiry = at, true
			i++
		default:
			c.w.Error(errSyntax)
			return
		}
	}
	if o.NX && o.XX {
		c.w.Error(errSyntax)
		return
	}
	respSetFlags(c, a[1], a[2], o, false)
}

// expiryAt turns EX/PX/EXAT/PXAT n into a Unix ms time.
func expiryAt(opt string, n int64) (int64, bool) {
	if n <= 0 {
		return 0, false
	}
	now := time.Now().UnixMilli()
	switch opt {
	case "ex":
		if n > math.MaxInt64/1000-now/1000 {
			return 0, false
		}
		return now + n*1000, true
	case "px":
		if n > math.MaxInt64-now {
			return 0, false
		}
		return now + n, true
	case "exat":
		if n > math.MaxInt64/1000 {
			return 0, false
		}
		return n * 1000, true
	}
	return n, true
}

// respSetFlags runs a SET; asInt answers SETNX's :1/:0.
func respSetFlags(c *respConn, key, val []byte, o kv.SetOpts, asInt bool) {
	r, err := c.srv.kv.Set(key, val, o)
	switch {
	case err != nil:
		c.fail(err)
	case asInt:
		c.w.IntBool(r.Done)
	case o.Get && r.HadOld:
		c.w.Bulk(r.Old)
	case o.Get:
		c.w.Null()
	case !r.Done:
		c.w.Null()
	default:
		c.w.OK()
	}
}

func respSetEx(c *respConn, a [][]byte, unit time.Duration) {
	n, ok := respInt(a[2])
	if !ok {
		c.w.Error(errNotInt)
		return
	}
	opt := "ex"
	if unit == time.Millisecond {
		opt = "px"
	}
	at, ok := expiryAt(opt, n)
	if !ok {
		c.w.Error("ERR invalid expire time in '" + map[string]string{"ex": "setex", "px": "psetex"}[opt] + "' command")
		return
	}
	respSetFlags(c, a[1], a[3], kv.SetOpts{ExpireAt: at}, false)
}

func respGet(c *respConn, a [][]byte) {
	v, ok, err := c.srv.kv.Get(a[1])
	c.bulkOrNull(v, ok, err)
}

func (c *respConn) bulkOrNull(v []byte, ok bool, err error) {
	switch {
	case err != nil:
		c.fail(err)
	case !ok:
		c.w.Null()
	default:
		c.w.Bulk(v)
	}
}

func respGetDel(c *respConn, a [][]byte) {
	v, ok, err := c.srv.kv.GetDel(a[1])
	c.bulkOrNull(v, ok, err)
}

// respGetEx: GETEX key [EX s|PX ms|EXAT s|PXAT ms|PERSIST]
func respGetEx(c *respConn, a [][]byte) {
	var at int64
	persist := false
	switch len(a) {
	case 2:
	case 3:
		if lower(a[2]) != "persist" {
			c.w.Error(errSyntax)
			return
		}
		persist = true
	case 4:
		opt := lower(a[2])
		if opt != "ex" && opt != "px" && opt != "exat" && opt != "pxat" {
			c.w.Error(errSyntax)
			return
		}
		bad := ""
		n, ok := respInt(a[3])
		if !ok {
			bad = errNotInt
		} else if at, ok = expiryAt(opt, n); !ok {
			bad = "ERR invalid expire time in 'getex' command"
		}
		if bad != "" {
			// Redis looks the key up before it reads the time: a missing
			// key is nil and a wrong type WRONGTYPE, whatever the time.
			if _, ok, err := c.srv.kv.Get(a[1]); err != nil || !ok {
				c.bulkOrNull(nil, false, err)
				return
			}
			c.w.Error(bad)
			return
		}
	default:
		c.w.Error(errSyntax)
		return
	}
	v, ok, err := c.srv.kv.GetEx(a[1], at, persist)
	c.bulkOrNull(v, ok, err)
}

func respMGet(c *respConn, a [][]byte) {
	vs, err := c.srv.kv.MGet(a[1:])
	if err != nil {
		c.fail(err)
		return
	}
	c.w.Array(len(vs))
	for _, v := range vs {
		if v == nil {
			c.w.Null()
		} else {
			c.w.Bulk(v)
		}
	}
}

func respMSet(c *respConn, a [][]byte, nx bool) {
	if len(a)%2 != 1 {
		name := "mset"
		if nx {
			name = "msetnx"
		}
		c.w.Error("ERR wrong number of arguments for '" + name + "' command")
		return
	}
	done, err := c.srv.kv.MSet(a[1:], nx)
	switch {
	case err != nil:
		c.fail(err)
	case nx:
		c.w.IntBool(done)
	default:
		c.w.OK()
	}
}

func respIncr(c *respConn, key []byte, by int64) {
	n, err := c.srv.kv.IncrBy(key, by)
	if err != nil {
		c.fail(err)
		return
	}
	c.w.Int(n)
}

func respIncrArg(c *respConn, a [][]byte, sign int64) {
	n, ok := respInt(a[2])
	if !ok || (sign < 0 && n == math.MinInt64) {
		c.w.Error(errNotInt)
		return
	}
	respIncr(c, a[1], sign*n)
}

func respIncrFloat(c *respConn, a [][]byte) {
	v, err := c.srv.kv.IncrByFloat(a[1], a[2])
	if err != nil {
		c.fail(err)
		return
	}
	c.w.Bulk(v)
}

func respAppend(c *respConn, a [][]byte) {
	n, err := c.srv.kv.Append(a[1], a[2])
	c.intOr(int64(n), err)
}

func (c *respConn) intOr(n int64, err error) {
	if err != nil {
		c.fail(err)
		return
	}
	c.w.Int(n)
}

func respStrLen(c *respConn, a [][]byte) {
	n, err := c.srv.kv.StrLen(a[1])
	c.intOr(int64(n), err)
}

// Keys.

func respDel(c *respConn, a [][]byte) {
	n, err := c.srv.kv.Del(a[1:])
	c.intOr(int64(n), err)
}

func respExists(c *respConn, a [][]byte) {
	n, err := c.srv.kv.Exists(a[1:])
	c.intOr(int64(n), err)
}

func respType(c *respConn, a [][]byte) {
	t, err := c.srv.kv.TypeOf(a[1])
	if err != nil {
		c.fail(err)
		return
	}
	c.w.Simple(t.String())
}

func respRename(c *respConn, a [][]byte, nx bool) {
	moved, err := c.srv.kv.Rename(a[1], a[2], nx)
	switch {
	case err != nil:
		c.fail(err)
	case nx:
		c.w.IntBool(moved)
	default:
		c.w.OK()
	}
}

// respExpire: EXPIRE key n [NX|XX|GT|LT]; at: n is a Unix time.
func respExpire(c *respConn, a [][]byte, unit time.Duration, at bool) {
	n, ok := respInt(a[2])
	if !ok {
		c.w.Error(errNotInt)
		return
	}
	var o kv.ExpireOpts
	for _, f := range a[3:] {
		switch lower(f) {
		case "nx":
			o.NX = true
		case "xx":
			o.XX = true
		case "gt":
			o.GT = true
		case "lt":
			o.LT = true
		default:
			c.w.Error("ERR Unsupported option " + string(f))
			return
		}
	}
	if o.NX && (o.XX || o.GT || o.LT) {
		c.w.Error("ERR NX and XX, GT or LT options at the same time are not compatible")
		return
	}
	if o.GT && o.LT {
		c.w.Error("ERR GT and LT options at the same time are not compatible")
		return
	}
	ms := n
	if unit == time.Second {
		if n > math.MaxInt64/1000 || n < math.MinInt64/1000 {
			c.w.Error("ERR invalid expire time in '" + lower(a[0]) + "' command")
			return
		}
		ms = n * 1000
	}
	if !at {
		now := time.Now().UnixMilli()
		if ms > math.MaxInt64-now {
			c.w.Error("ERR invalid expire time in '" + lower(a[0]) + "' command")
			return
		}
		ms += now
	}
	changed, err := c.srv.kv.Expire(a[1], ms, o)
	if err != nil {
		c.fail(err)
		return
	}
	c.w.IntBool(changed)
}

func respTTL(c *respConn, key []byte, unit time.Duration) {
	ms, err := c.srv.kv.TTL(key)
	switch {
	case err != nil:
		c.fail(err)
	case ms < 0 || unit == time.Millisecond:
		c.w.Int(ms)
	default:
		c.w.Int((ms + 500) / 1000) // Redis rounds
	}
}

func respPersist(c *respConn, a [][]byte) {
	ok, err := c.srv.kv.Persist(a[1])
	if err != nil {
		c.fail(err)
		return
	}
	c.w.IntBool(ok)
}

// scanArgs reads [MATCH p] [COUNT n] [TYPE t] (TYPE only for SCAN).
func scanArgs(c *respConn, a [][]byte, withType bool) (match []byte, count int, typ kv.Type, ok bool) {
	count = 10
	for i := 0; i < len(a); i += 2 {
		if i+1 >= len(a) {
			c.w.Error(errSyntax)
			return nil, 0, 0, false
		}
		switch lower(a[i]) {
		case "match":
			match = a[i+1]
			if string(match) == "*" {
				match = nil
			}
		case "count":
			n, isInt := respInt(a[i+1])
			if !isInt {
				c.w.Error(errNotInt)
				return nil, 0, 0, false
			}
			if n < 1 {
				c.w.Error(errSyntax)
				return nil, 0, 0, false
			}
			count = int(min(n, 1<<20))
		case "type":
			if !withType {
				c.w.Error(errSyntax)
				return nil, 0, 0, false
			}
			t, known := kv.ParseType(lower(a[i+1]))
			if !known {
				t = kv.Type(1) // an unknown type matches nothing, as in Redis
			}
			typ = t
		default:
			c.w.Error(errSyntax)
			return nil, 0, 0, false
		}
	}
	return match, count, typ, true
}

func parseCursor(c *respConn, b []byte) (uint64, bool) {
	n, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		c.w.Error("ERR invalid cursor")
		return 0, false
	}
	return n, true
}

func respScan(c *respConn, a [][]byte) {
	cur, ok := parseCursor(c, a[1])
	if !ok {
		return
	}
	match, count, typ, ok := scanArgs(c, a[2:], true)
	if !ok {
		return
	}
	keys, next, err := c.srv.kv.Scan(cur, kv.ScanOpts{Match: match, Count: count, Type: typ})
	if err != nil {
		c.fail(err)
		return
	}
	c.scanReply(next, keys)
}

func (c *respConn) scanReply(next uint64, items [][]byte) {
	c.w.Array(2)
	c.w.BulkString(strconv.FormatUint(next, 10))
	c.w.Array(len(items))
	for _, k := range items {
		c.w.Bulk(k)
	}
}

func respKeys(c *respConn, a [][]byte) {
	p := a[1]
	if string(p) == "*" {
		p = nil
	}
	keys, err := c.srv.kv.Keys(p)
	if err != nil {
		c.fail(err)
		return
	}
	c.w.Array(len(keys))
	for _, k := range keys {
		c.w.Bulk(k)
	}
}

// Hashes.

func respHSet(c *respConn, a [][]byte, hmset bool) {
	if len(a)%2 != 0 {
		c.w.Error("ERR wrong number of arguments for '" + lower(a[0]) + "' command")
		return
	}
	n, err := c.srv.kv.HSet(a[1], a[2:], false)
	switch {
	case err != nil:
		c.fail(err)
	case hmset:
		c.w.OK()
	default:
		c.w.Int(int64(n))
	}
}

func respHSetNX(c *respConn, a [][]byte) {
	n, err := c.srv.kv.HSet(a[1], a[2:], true)
	if err != nil {
		c.fail(err)
		return
	}
	c.w.IntBool(n > 0)
}

func respHGet(c *respConn, a [][]byte) {
	v, ok, err := c.srv.kv.HGet(a[1], a[2])
	c.bulkOrNull(v, ok, err)
}

func respHMGet(c *respConn, a [][]byte) {
	vs, err := c.srv.kv.HMGet(a[1], a[2:])
	if err != nil {
		c.fail(err)
		return
	}
	c.w.Array(len(vs))
	for _, v := range vs {
		if v == nil {
			c.w.Null()
		} else {
			c.w.Bulk(v)
		}
	}
}

func respHDel(c *respConn, a [][]byte) {
	n, err := c.srv.kv.HDel(a[1], a[2:])
	c.intOr(int64(n), err)
}

func respHGetAll(c *respConn, key []byte, fields, values bool) {
	items, err := c.srv.kv.HGetAll(key, fields, values)
	if err != nil {
		c.fail(err)
		return
	}
	if fields && values {
		c.w.Map(len(items) / 2)
	} else {
		c.w.Array(len(items))
	}
	for _, v := range items {
		c.w.Bulk(v)
	}
}

func respHIncrBy(c *respConn, a [][]byte) {
	n, ok := respInt(a[3])
	if !ok {
		c.w.Error(errNotInt)
		return
	}
	v, err := c.srv.kv.HIncrBy(a[1], a[2], n)
	c.intOr(v, err)
}

func respHIncrByFloat(c *respConn, a [][]byte) {
	v, err := c.srv.kv.HIncrByFloat(a[1], a[2], a[3])
	if err != nil {
		c.fail(err)
		return
	}
	c.w.Bulk(v)
}

func respHLen(c *respConn, a [][]byte) {
	n, err := c.srv.kv.HLen(a[1])
	c.intOr(n, err)
}

func respHExists(c *respConn, a [][]byte) {
	ok, err := c.srv.kv.HExists(a[1], a[2])
	if err != nil {
		c.fail(err)
		return
	}
	c.w.IntBool(ok)
}

// respMemberScan: HSCAN|SSCAN|ZSCAN key cursor [MATCH p] [COUNT n]
func respMemberScan(c *respConn, a [][]byte, t kv.Type) {
	cur, ok := parseCursor(c, a[2])
	if !ok {
		return
	}
	match, count, _, ok := scanArgs(c, a[3:], false)
	if !ok {
		return
	}
	members, next, err := c.srv.kv.MemberScan(a[1], t, cur, match, count)
	if err != nil {
		c.fail(err)
		return
	}
	items := make([][]byte, 0, 2*len(members))
	for _, m := range members {
		items = append(items, m.Name)
		switch t {
		case kv.TypeHash:
			items = append(items, m.Value)
		case kv.TypeZSet:
			items = append(items, resp.AppendFloat(nil, m.Score)) // "inf", as Redis, not Go's "+Inf"
		}
	}
	c.scanReply(next, items)
}

// Sets.

func respSAdd(c *respConn, a [][]byte) {
	n, err := c.srv.kv.SAdd(a[1], a[2:])
	c.intOr(int64(n), err)
}

func respSRem(c *respConn, a [][]byte) {
	n, err := c.srv.kv.SRem(a[1], a[2:])
	c.intOr(int64(n), err)
}

func respSMembers(c *respConn, a [][]byte) {
	ms, err := c.srv.kv.SMembers(a[1])
	c.set(ms, err)
}

func (c *respConn) set(ms [][]byte, err error) {
	if err != nil {
		c.fail(err)
		return
	}
	c.w.Set(len(ms))
	for _, m := range ms {
		c.w.Bulk(m)
	}
}

func respSIsMember(c *respConn, a [][]byte) {
	ok, err := c.srv.kv.SIsMember(a[1], a[2])
	if err != nil {
		c.fail(err)
		return
	}
	c.w.IntBool(ok)
}

func respSMIsMember(c *respConn, a [][]byte) {
	in, err := c.srv.kv.SMIsMember(a[1], a[2:])
	if err != nil {
		c.fail(err)
		return
	}
	c.w.Array(len(in))
	for _, there := range in {
		c.w.IntBool(there)
	}
}

func respSCard(c *respConn, a [][]byte) {
	n, err := c.srv.kv.SCard(a[1])
	c.intOr(n, err)
}

func respSCombine(c *respConn, a [][]byte, op kv.SetOp) {
	ms, err := c.srv.kv.SCombine(op, a[1:])
	c.set(ms, err)
}

// Sorted sets.

// respZAdd: ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member [score member ...]
func respZAdd(c *respConn, a [][]byte) {
	var o kv.ZAddOpts
	i := 2
flags:
	for ; i < len(a); i++ {
		switch lower(a[i]) {
		case "nx":
			o.NX = true
		case "xx":
			o.XX = true
		case "gt":
			o.GT = true
		case "lt":
			o.LT = true
		case "ch":
			o.CH = true
		case "incr":
			o.Incr = true
		default:
			break flags
		}
	}
	rest := a[i:]
	if len(rest) == 0 || len(rest)%2 != 0 {
		c.w.Error(errSyntax)
		return
	}
	items := make([]kv.ScoredMember, 0, len(rest)/2)
	for j := 0; j < len(rest); j += 2 {
		f, err := kv.ParseFloat(rest[j])
		if err != nil {
			c.w.Error(errNotFloat)
			return
		}
		items = append(items, kv.ScoredMember{Score: f, Member: rest[j+1]})
	}
	n, incr, ok, err := c.srv.kv.ZAdd(a[1], o, items)
	switch {
	case err != nil:
		c.fail(err)
	case o.Incr && !ok:
		c.w.Null()
	case o.Incr:
		c.w.Double(incr)
	default:
		c.w.Int(int64(n))
	}
}

func respZRem(c *respConn, a [][]byte) {
	n, err := c.srv.kv.ZRem(a[1], a[2:])
	c.intOr(int64(n), err)
}

func respZScore(c *respConn, a [][]byte) {
	f, ok, err := c.srv.kv.ZScore(a[1], a[2])
	switch {
	case err != nil:
		c.fail(err)
	case !ok:
		c.w.Null()
	default:
		c.w.Double(f)
	}
}

func respZIncrBy(c *respConn, a [][]byte) {
	d, err := kv.ParseFloat(a[2])
	if err != nil {
		c.w.Error(errNotFloat)
		return
	}
	f, err := c.srv.kv.ZIncrBy(a[1], d, a[3])
	if err != nil {
		c.fail(err)
		return
	}
	c.w.Double(f)
}

func respZCard(c *respConn, a [][]byte) {
	n, err := c.srv.kv.ZCard(a[1])
	c.intOr(n, err)
}

func respZRank(c *respConn, a [][]byte, rev bool) {
	r, ok, err := c.srv.kv.ZRank(a[1], a[2], rev)
	switch {
	case err != nil:
		c.fail(err)
	case !ok:
		c.w.Null()
	default:
		c.w.Int(r)
	}
}

func parseScoreBound(b []byte) (kv.ScoreBound, bool) {
	var sb kv.ScoreBound
	if len(b) > 0 && b[0] == '(' {
		sb.Exclusive, b = true, b[1:]
	}
	var ok bool
	sb.Value, ok = kv.ParseScoreBound(b)
	return sb, ok
}

func parseLexBound(b []byte) (kv.LexBound, bool) {
	switch {
	case string(b) == "-":
		return kv.LexBound{Inf: -1}, true
	case string(b) == "+":
		return kv.LexBound{Inf: 1}, true
	case len(b) > 0 && b[0] == '(':
		return kv.LexBound{Value: b[1:], Exclusive: true}, true
	case len(b) > 0 && b[0] == '[':
		return kv.LexBound{Value: b[1:]}, true
	}
	return kv.LexBound{}, false
}

// respZRange serves ZRANGE (by is "": read BYSCORE/BYLEX/REV from the
// arguments) and the older ZREVRANGE, ZRANGEBYSCORE, ZRANGEBYLEX forms.
func respZRange(c *respConn, a [][]byte, by string, rev bool) {
	o := kv.RangeOpts{By: by, Rev: rev, Count: -1}
	withScores, limit := false, false
	modern := by == ""
	if modern {
		o.By = "index"
	}
	for i := 4; i < len(a); i++ {
		switch opt := lower(a[i]); {
		case opt == "withscores" && o.By != "lex":
			withScores = true
		case opt == "byscore" && modern:
			o.By = "score"
		case opt == "bylex" && modern:
			o.By = "lex"
		case opt == "rev" && modern:
			o.Rev = true
		case opt == "limit" && i+2 < len(a):
			off, ok1 := respInt(a[i+1])
			cnt, ok2 := respInt(a[i+2])
			if !ok1 || !ok2 {
				c.w.Error(errNotInt)
				return
			}
			o.Offset, o.Count, limit = off, cnt, true
			i += 2
		default:
			c.w.Error(errSyntax)
			return
		}
	}
	if withScores && o.By == "lex" {
		c.w.Error(errSyntax)
		return
	}
	if limit && o.By == "index" {
		c.w.Error("ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX")
		return
	}
	lo, hi := a[2], a[3]
	if o.Rev && o.By != "index" {
		lo, hi = hi, lo // REV takes max first
	}
	if !c.rangeEnds(&o, lo, hi) {
		return
	}
	items, err := c.srv.kv.ZRange(a[1], o)
	if err != nil {
		c.fail(err)
		return
	}
	c.scored(items, withScores)
}

func (c *respConn) scored(items []kv.ScoredMember, withScores bool) {
	if withScores && c.w.RESP3 {
		c.w.Array(len(items))
		for _, it := range items {
			c.w.Array(2)
			c.w.Bulk(it.Member)
			c.w.Double(it.Score)
		}
		return
	}
	n := len(items)
	if withScores {
		n *= 2
	}
	c.w.Array(n)
	for _, it := range items {
		c.w.Bulk(it.Member)
		if withScores {
			c.w.Double(it.Score)
		}
	}
}

func respZCount(c *respConn, a [][]byte) {
	if o, ok := c.rangeArgs(a, "score"); ok {
		n, err := c.srv.kv.ZCount(a[1], o.Min, o.Max)
		c.intOr(n, err)
	}
}

// rangeArgs reads the range of a command whose ends are a[2] and a[3],
// the low end first (ZCOUNT, ZLEXCOUNT, ZREMRANGEBY*). It answers the
// error.
func (c *respConn) rangeArgs(a [][]byte, by string) (kv.RangeOpts, bool) {
	o := kv.RangeOpts{By: by, Count: -1}
	ok := c.rangeEnds(&o, a[2], a[3])
	return o, ok
}

// rangeEnds reads a range's low and high ends into o as o.By says:
// ranks, score bounds or lex bounds. It answers the error.
func (c *respConn) rangeEnds(o *kv.RangeOpts, lo, hi []byte) bool {
	ok1, ok2 := false, false
	switch o.By {
	case "index":
		o.Start, ok1 = respInt(lo)
		o.Stop, ok2 = respInt(hi)
		if !ok1 || !ok2 {
			c.w.Error(errNotInt)
		}
	case "score":
		o.Min, ok1 = parseScoreBound(lo)
		o.Max, ok2 = parseScoreBound(hi)
		if !ok1 || !ok2 {
			c.w.Error(errMinMax)
		}
	case "lex":
		o.LexMin, ok1 = parseLexBound(lo)
		o.LexMax, ok2 = parseLexBound(hi)
		if !ok1 || !ok2 {
			c.w.Error(errLexMinMax)
		}
	}
	return ok1 && ok2
}

func respZRemRange(c *respConn, a [][]byte, by string) {
	if o, ok := c.rangeArgs(a, by); ok {
		n, err := c.srv.kv.ZRemRange(a[1], o)
		c.intOr(int64(n), err)
	}
}

func respZLexCount(c *respConn, a [][]byte) {
	if o, ok := c.rangeArgs(a, "lex"); ok {
		items, err := c.srv.kv.ZRange(a[1], o)
		c.intOr(int64(len(items)), err)
	}
}

func respZMScore(c *respConn, a [][]byte) {
	scores, ok, err := c.srv.kv.ZMScore(a[1], a[2:])
	if err != nil {
		c.fail(err)
		return
	}
	c.w.Array(len(scores))
	for i, f := range scores {
		if ok[i] {
			c.w.Double(f)
		} else {
			c.w.Null()
		}
	}
}

func respZPop(c *respConn, a [][]byte, max bool) {
	count, hasCount := 1, len(a) == 3
	if len(a) > 3 {
		c.w.Error(errSyntax)
		return
	}
	if hasCount {
		n, ok := respInt(a[2])
		if !ok || n < 0 {
			c.w.Error("ERR value is out of range, must be positive")
			return
		}
		count = int(min(n, 1<<20))
	}
	items, err := c.srv.kv.ZPop(a[1], count, max)
	if err != nil {
		c.fail(err)
		return
	}
	if hasCount && c.w.RESP3 {
		c.scored(items, true)
		return
	}
	c.w.Array(2 * len(items))
	for _, it := range items {
		c.w.Bulk(it.Member)
		c.w.Double(it.Score)
	}
}
