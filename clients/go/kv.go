package flowmesh

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"math"
	"sort"
	"strconv"
	"time"

	"github.com/flowmesh/flowmesh/protocol"
)

// KV is the cache API of a Conn (Conn.KV): the commands of FlowMesh's KV
// engine, which the Redis-compatible port serves too. Typed methods cover
// the common ones; Do runs any other.
type KV struct{ c *Conn }

// ErrWrongType is returned by a command on a key of another type.
var ErrWrongType = errors.New("flowmesh: wrong type")

// Do runs a KV command (as Redis spells it: "SET", "k", "v", "EX", "10")
// and returns its reply decoded: nil, string (status), int64, []byte,
// float64, bool, []any, or map[string]any. Arguments are strings, []byte,
// integers, floats or time.Duration (whole seconds).
func (k *KV) Do(ctx context.Context, args ...any) (any, error) {
	bs := make([][]byte, len(args))
	for i, a := range args {
		b, err := argBytes(a)
		if err != nil {
			return nil, err
		}
		bs[i] = b
	}
	return k.do(ctx, bs...)
}

func argBytes(a any) ([]byte, error) {
	switch v := a.(type) {
	case string:
		return []byte(v), nil
	case []byte:
		return v, nil
	case int:
		return strconv.AppendInt(nil, int64(v), 10), nil
	case int64:
		return strconv.AppendInt(nil, v, 10), nil
	case uint64:
		return strconv.AppendUint(nil, v, 10), nil
	case float64:
		return strconv.AppendFloat(nil, v, 'g', -1, 64), nil
	case time.Duration:
		return strconv.AppendInt(nil, int64(v/time.Second), 10), nil
	}
	return nil, fmt.Errorf("flowmesh: KV argument of type %T", a)
}

func (k *KV) do(ctx context.Context, args ...[]byte) (any, error) {
	n := 16
	for _, a := range args {
		n += len(a) + 16
	}
	cmd := make([]byte, 0, n)
	cmd = append(strconv.AppendInt(append(cmd, '*'), int64(len(args)), 10), '\r', '\n')
	for _, a := range args {
		cmd = append(strconv.AppendInt(append(cmd, '$'), int64(len(a)), 10), '\r', '\n')
		cmd = append(append(cmd, a...), '\r', '\n')
	}
	if max := k.c.MaxPayload(); max > 0 && len(cmd) > max {
		return nil, ErrMaxPayload
	}
	cl, err := k.c.do(ctx, func(b []byte) []byte { return protocol.AppendSized(b, "KVB", nil, nil, cmd) })
	if err != nil {
		var fe *Error
		if errors.As(err, &fe) && fe.Code == protocol.CodeWrongType {
			return nil, fmt.Errorf("%w: %v", ErrWrongType, err)
		}
		return nil, err
	}
	v, rest, err := decodeReply(cl.data)
	if err == nil && len(rest) != 0 {
		err = errors.New("trailing bytes")
	}
	if err != nil {
		return nil, fmt.Errorf("flowmesh: bad KV reply %q: %w", cl.data, err)
	}
	return v, nil
}

// decodeReply decodes one RESP3 reply.
func decodeReply(b []byte) (any, []byte, error) {
	i := 0
	for i+1 < len(b) && !(b[i] == '\r' && b[i+1] == '\n') {
		i++
	}
	if len(b) < 3 || i+1 >= len(b) {
		return nil, nil, errors.New("short reply")
	}
	kind, line, rest := b[0], string(b[1:i]), b[i+2:]
	switch kind {
	case '+':
		return line, rest, nil
	case '-':
		return nil, nil, fmt.Errorf("error reply %q", line)
	case ':':
		n, err := strconv.ParseInt(line, 10, 64)
		return n, rest, err
	case '_':
		return nil, rest, nil
	case '#':
		return line == "t", rest, nil
	case ',':
		f, err := parseFloat(line)
		return f, rest, err
	case '$', '=':
		n, err := strconv.Atoi(line)
		if err != nil || n < 0 || len(rest) < n+2 {
			return nil, nil, errors.New("bad bulk length")
		}
		v := append([]byte{}, rest[:n]...)
		if kind == '=' && len(v) >= 4 {
			v = v[4:] // "txt:"
		}
		return v, rest[n+2:], nil
	case '*', '~', '>', '%':
		n, err := strconv.Atoi(line)
		if err != nil || n < 0 {
			return nil, nil, errors.New("bad aggregate length")
		}
		if kind == '%' {
			m := make(map[string]any, n)
			for j := 0; j < n; j++ {
				var key, val any
				if key, rest, err = decodeReply(rest); err != nil {
					return nil, nil, err
				}
				if val, rest, err = decodeReply(rest); err != nil {
					return nil, nil, err
				}
				m[fmt.Sprint(asString(key))] = val
			}
			return m, rest, nil
		}
		out := make([]any, n)
		for j := range out {
			if out[j], rest, err = decodeReply(rest); err != nil {
				return nil, nil, err
			}
		}
		return out, rest, nil
	}
	return nil, nil, fmt.Errorf("unknown reply type %q", kind)
}

func parseFloat(s string) (float64, error) {
	switch s {
	case "inf":
		return math.Inf(1), nil
	case "-inf":
		return math.Inf(-1), nil
	}
	return strconv.ParseFloat(s, 64)
}

func asString(v any) string {
	switch x := v.(type) {
	case []byte:
		return string(x)
	case string:
		return x
	}
	return fmt.Sprint(v)
}

func asInt(v any, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	n, ok := v.(int64)
	if !ok {
		return 0, fmt.Errorf("flowmesh: want an integer reply, got %T", v)
	}
	return n, nil
}

func asBytes(v any, err error) ([]byte, bool, error) {
	if err != nil || v == nil {
		return nil, false, err
	}
	b, ok := v.([]byte)
	if !ok {
		return nil, false, fmt.Errorf("flowmesh: want a string reply, got %T", v)
	}
	return b, true, nil
}

func asFloat(v any, err error) (float64, bool, error) {
	if err != nil || v == nil {
		return 0, false, err
	}
	switch x := v.(type) {
	case float64:
		return x, true, nil
	case []byte:
		f, err := parseFloat(string(x))
		return f, err == nil, err
	}
	return 0, false, fmt.Errorf("flowmesh: want a number reply, got %T", v)
}

func asList(v any, err error) ([]any, error) {
	if err != nil || v == nil {
		return nil, err
	}
	l, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("flowmesh: want a list reply, got %T", v)
	}
	return l, nil
}

// SetOption configures Set.
type SetOption func(*[][]byte)

// TTL makes the key expire after d (millisecond precision).
func TTL(d time.Duration) SetOption {
	return func(a *[][]byte) { *a = append(*a, []byte("PX"), strconv.AppendInt(nil, d.Milliseconds(), 10)) }
}

// ExpireAt makes the key expire at t.
func ExpireAt(t time.Time) SetOption {
	return func(a *[][]byte) { *a = append(*a, []byte("PXAT"), strconv.AppendInt(nil, t.UnixMilli(), 10)) }
}

// KeepTTL keeps the key's current expiry.
func KeepTTL() SetOption { return func(a *[][]byte) { *a = append(*a, []byte("KEEPTTL")) } }

// IfAbsent sets only if the key does not exist (NX).
func IfAbsent() SetOption { return func(a *[][]byte) { *a = append(*a, []byte("NX")) } }

// IfPresent sets only if the key exists (XX).
func IfPresent() SetOption { return func(a *[][]byte) { *a = append(*a, []byte("XX")) } }

// Set writes a string value. It reports false when IfAbsent or IfPresent
// stopped it.
func (k *KV) Set(ctx context.Context, key string, value []byte, opts ...SetOption) (bool, error) {
	args := [][]byte{[]byte("SET"), []byte(key), value}
	for _, o := range opts {
		o(&args)
	}
	v, err := k.do(ctx, args...)
	return v != nil, err
}

// Get reads a string value; ok is false if the key does not exist.
func (k *KV) Get(ctx context.Context, key string) (value []byte, ok bool, err error) {
	return asBytes(k.do(ctx, []byte("GET"), []byte(key)))
}

// MGet reads several keys; a missing one is nil.
func (k *KV) MGet(ctx context.Context, keys ...string) ([][]byte, error) {
	l, err := asList(k.do(ctx, cmd("MGET", keys...)...))
	out := make([][]byte, len(l))
	for i, v := range l {
		out[i], _ = v.([]byte)
	}
	return out, err
}

// MSet writes several keys at once.
func (k *KV) MSet(ctx context.Context, pairs map[string][]byte) error {
	args := [][]byte{[]byte("MSET")}
	for _, key := range sortedKeys(pairs) {
		args = append(args, []byte(key), pairs[key])
	}
	_, err := k.do(ctx, args...)
	return err
}

// Del deletes keys and returns how many existed.
func (k *KV) Del(ctx context.Context, keys ...string) (int64, error) {
	return asInt(k.do(ctx, cmd("DEL", keys...)...))
}

// Exists counts the keys that exist.
func (k *KV) Exists(ctx context.Context, keys ...string) (int64, error) {
	return asInt(k.do(ctx, cmd("EXISTS", keys...)...))
}

// Expire sets a key's time to live; it reports false if the key does not
// exist.
func (k *KV) Expire(ctx context.Context, key string, d time.Duration) (bool, error) {
	n, err := asInt(k.do(ctx, []byte("PEXPIRE"), []byte(key), strconv.AppendInt(nil, d.Milliseconds(), 10)))
	return n == 1, err
}

// Persist removes a key's expiry.
func (k *KV) Persist(ctx context.Context, key string) (bool, error) {
	n, err := asInt(k.do(ctx, []byte("PERSIST"), []byte(key)))
	return n == 1, err
}

// TTL is a key's time to live: -1 if it has none, -2 if it does not exist
// (as in Redis; the units are nanoseconds here, millisecond precision).
func (k *KV) TTL(ctx context.Context, key string) (time.Duration, error) {
	ms, err := asInt(k.do(ctx, []byte("PTTL"), []byte(key)))
	if ms < 0 {
		return time.Duration(ms), err
	}
	return time.Duration(ms) * time.Millisecond, err
}

// Incr adds 1 to an integer value and returns the result.
func (k *KV) Incr(ctx context.Context, key string) (int64, error) { return k.IncrBy(ctx, key, 1) }

// IncrBy adds n to an integer value and returns the result.
func (k *KV) IncrBy(ctx context.Context, key string, n int64) (int64, error) {
	return asInt(k.do(ctx, []byte("INCRBY"), []byte(key), strconv.AppendInt(nil, n, 10)))
}

// IncrByFloat adds f to a float value and returns the result.
func (k *KV) IncrByFloat(ctx context.Context, key string, f float64) (float64, error) {
	v, _, err := asFloat(k.do(ctx, []byte("INCRBYFLOAT"), []byte(key), strconv.AppendFloat(nil, f, 'g', -1, 64)))
	return v, err
}

// Type is a key's type: "string", "hash", "set", "zset" or "none".
func (k *KV) Type(ctx context.Context, key string) (string, error) {
	v, err := k.do(ctx, []byte("TYPE"), []byte(key))
	s, _ := v.(string)
	return s, err
}

// Rename moves a key.
func (k *KV) Rename(ctx context.Context, from, to string) error {
	_, err := k.do(ctx, []byte("RENAME"), []byte(from), []byte(to))
	return err
}

// HSet sets hash fields and returns how many were new.
func (k *KV) HSet(ctx context.Context, key string, fields map[string][]byte) (int64, error) {
	args := [][]byte{[]byte("HSET"), []byte(key)}
	for _, f := range sortedKeys(fields) {
		args = append(args, []byte(f), fields[f])
	}
	return asInt(k.do(ctx, args...))
}

// HGet reads a hash field.
func (k *KV) HGet(ctx context.Context, key, field string) ([]byte, bool, error) {
	return asBytes(k.do(ctx, []byte("HGET"), []byte(key), []byte(field)))
}

// HGetAll reads a whole hash.
func (k *KV) HGetAll(ctx context.Context, key string) (map[string][]byte, error) {
	v, err := k.do(ctx, []byte("HGETALL"), []byte(key))
	if err != nil {
		return nil, err
	}
	m, _ := v.(map[string]any)
	out := make(map[string][]byte, len(m))
	for f, x := range m {
		out[f], _ = x.([]byte)
	}
	return out, nil
}

// HDel deletes hash fields.
func (k *KV) HDel(ctx context.Context, key string, fields ...string) (int64, error) {
	return asInt(k.do(ctx, cmd("HDEL", append([]string{key}, fields...)...)...))
}

// HLen counts a hash's fields.
func (k *KV) HLen(ctx context.Context, key string) (int64, error) {
	return asInt(k.do(ctx, []byte("HLEN"), []byte(key)))
}

// HIncrBy adds n to an integer field.
func (k *KV) HIncrBy(ctx context.Context, key, field string, n int64) (int64, error) {
	return asInt(k.do(ctx, []byte("HINCRBY"), []byte(key), []byte(field), strconv.AppendInt(nil, n, 10)))
}

// SAdd adds set members and returns how many were new.
func (k *KV) SAdd(ctx context.Context, key string, members ...string) (int64, error) {
	return asInt(k.do(ctx, cmd("SADD", append([]string{key}, members...)...)...))
}

// SRem removes set members.
func (k *KV) SRem(ctx context.Context, key string, members ...string) (int64, error) {
	return asInt(k.do(ctx, cmd("SREM", append([]string{key}, members...)...)...))
}

// SMembers lists a set's members, sorted.
func (k *KV) SMembers(ctx context.Context, key string) ([]string, error) {
	l, err := asList(k.do(ctx, []byte("SMEMBERS"), []byte(key)))
	out := make([]string, len(l))
	for i, v := range l {
		out[i] = asString(v)
	}
	sort.Strings(out)
	return out, err
}

// SIsMember reports whether member is in the set.
func (k *KV) SIsMember(ctx context.Context, key, member string) (bool, error) {
	n, err := asInt(k.do(ctx, []byte("SISMEMBER"), []byte(key), []byte(member)))
	return n == 1, err
}

// SCard counts a set's members.
func (k *KV) SCard(ctx context.Context, key string) (int64, error) {
	return asInt(k.do(ctx, []byte("SCARD"), []byte(key)))
}

// Z is a sorted-set member with its score.
type Z struct {
	Member string
	Score  float64
}

// ZAdd adds or updates sorted-set members and returns how many were new.
func (k *KV) ZAdd(ctx context.Context, key string, members ...Z) (int64, error) {
	args := [][]byte{[]byte("ZADD"), []byte(key)}
	for _, z := range members {
		args = append(args, strconv.AppendFloat(nil, z.Score, 'g', -1, 64), []byte(z.Member))
	}
	return asInt(k.do(ctx, args...))
}

// ZScore is a member's score.
func (k *KV) ZScore(ctx context.Context, key, member string) (float64, bool, error) {
	return asFloat(k.do(ctx, []byte("ZSCORE"), []byte(key), []byte(member)))
}

// ZIncrBy adds d to a member's score and returns the new score.
func (k *KV) ZIncrBy(ctx context.Context, key string, d float64, member string) (float64, error) {
	f, _, err := asFloat(k.do(ctx, []byte("ZINCRBY"), []byte(key), strconv.AppendFloat(nil, d, 'g', -1, 64), []byte(member)))
	return f, err
}

// ZRem removes sorted-set members.
func (k *KV) ZRem(ctx context.Context, key string, members ...string) (int64, error) {
	return asInt(k.do(ctx, cmd("ZREM", append([]string{key}, members...)...)...))
}

// ZCard counts a sorted set's members.
func (k *KV) ZCard(ctx context.Context, key string) (int64, error) {
	return asInt(k.do(ctx, []byte("ZCARD"), []byte(key)))
}

// ZRank is a member's rank by ascending score; ok is false if it is absent.
func (k *KV) ZRank(ctx context.Context, key, member string) (rank int64, ok bool, err error) {
	v, err := k.do(ctx, []byte("ZRANK"), []byte(key), []byte(member))
	if v == nil || err != nil {
		return 0, false, err
	}
	n, err := asInt(v, nil)
	return n, err == nil, err
}

// ZRange lists members by rank (negative counts from the end), with scores.
func (k *KV) ZRange(ctx context.Context, key string, start, stop int64) ([]Z, error) {
	return zlist(k.do(ctx, []byte("ZRANGE"), []byte(key), strconv.AppendInt(nil, start, 10), strconv.AppendInt(nil, stop, 10), []byte("WITHSCORES")))
}

// ZRangeByScore lists members with scores between min and max, written as
// Redis does ("1", "(1" for exclusive, "-inf", "+inf").
func (k *KV) ZRangeByScore(ctx context.Context, key, min, max string) ([]Z, error) {
	return zlist(k.do(ctx, []byte("ZRANGE"), []byte(key), []byte(min), []byte(max), []byte("BYSCORE"), []byte("WITHSCORES")))
}

// ZRemRangeByScore removes the members with scores between min and max,
// written as for ZRangeByScore, and returns how many went: with ZAdd and
// ZCard, the sliding-window rate limiter.
func (k *KV) ZRemRangeByScore(ctx context.Context, key, min, max string) (int64, error) {
	return asInt(k.do(ctx, []byte("ZREMRANGEBYSCORE"), []byte(key), []byte(min), []byte(max)))
}

func zlist(v any, err error) ([]Z, error) {
	l, err := asList(v, err)
	out := make([]Z, 0, len(l))
	for _, x := range l {
		pair, _ := x.([]any) // RESP3: [member, score] pairs
		if len(pair) != 2 {
			return nil, fmt.Errorf("flowmesh: bad sorted-set reply")
		}
		f, _, ferr := asFloat(pair[1], nil)
		if ferr != nil {
			return nil, ferr
		}
		out = append(out, Z{Member: asString(pair[0]), Score: f})
	}
	return out, err
}

// Scan iterates over the keys matching pattern (a glob; "" for all), a
// page of about count keys per round trip. Keys that exist for the whole
// scan are seen once.
func (k *KV) Scan(ctx context.Context, pattern string, count int) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		cursor := "0"
		for {
			args := [][]byte{[]byte("SCAN"), []byte(cursor)}
			if pattern != "" {
				args = append(args, []byte("MATCH"), []byte(pattern))
			}
			if count > 0 {
				args = append(args, []byte("COUNT"), strconv.AppendInt(nil, int64(count), 10))
			}
			l, err := asList(k.do(ctx, args...))
			if err == nil && len(l) != 2 {
				err = errors.New("flowmesh: bad SCAN reply")
			}
			if err != nil {
				yield("", err)
				return
			}
			keys, _ := l[1].([]any)
			for _, key := range keys {
				if !yield(asString(key), nil) {
					return
				}
			}
			if cursor = asString(l[0]); cursor == "0" {
				return
			}
		}
	}
}

func cmd(name string, args ...string) [][]byte {
	out := make([][]byte, 0, 1+len(args))
	out = append(out, []byte(name))
	for _, a := range args {
		out = append(out, []byte(a))
	}
	return out
}

func sortedKeys(m map[string][]byte) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
