package log

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"sync"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// Batch layout. Every constant here is part of the on-disk format and must
// not change without a new version byte.
//
//	+-------+---------+-------+-------+-------------+-------+----------+----------+--------+---------+--------+
//	| magic | version | codec | flags | base offset | count | first ts |  max ts  | rawLen | dataLen |  crc   |
//	|  1B   |   1B    |  1B   |  1B   |     8B      |  4B   |    8B    |    8B    |   4B   |   4B    |   4B   |
//	+-------+---------+-------+-------+-------------+-------+----------+----------+--------+---------+--------+
//	| data: the records block, compressed with codec (dataLen bytes)                                         |
//	+--------------------------------------------------------------------------------------------------------+
//
// Integers are little-endian. Timestamps are Unix nanoseconds. crc is the
// masked CRC-32C of the header bytes before it followed by data. The records
// block, before compression (rawLen bytes), is the records one after the
// other, each:
//
//	uvarint ts delta (from first ts) | uvarint key len | key | uvarint headers len | headers | uvarint value len | value
//
// The offset of the i-th record is base offset + i.
const (
	batchMagic      = 0xFB
	batchVersion    = 1
	batchHeaderSize = 44
	crcPos          = 40
)

// Codec compresses a batch's records block.
type Codec uint8

// Codecs. The numbers are part of the on-disk format.
const (
	CodecNone Codec = 0
	CodecS2   Codec = 1
	CodecZstd Codec = 2
)

func (c Codec) String() string {
	switch c {
	case CodecNone:
		return "none"
	case CodecS2:
		return "s2"
	case CodecZstd:
		return "zstd"
	}
	return fmt.Sprintf("codec(%d)", c)
}

// ParseCodec reads "none", "s2" or "zstd".
func ParseCodec(s string) (Codec, error) {
	switch s {
	case "none":
		return CodecNone, nil
	case "s2", "":
		return CodecS2, nil
	case "zstd":
		return CodecZstd, nil
	}
	return 0, fmt.Errorf("log: unknown codec %q (want none, s2 or zstd)", s)
}

// Record is one entry of the log.
type Record struct {
	Offset    uint64 // set by the log
	Timestamp int64  // Unix nanoseconds; 0 means "now" on append
	Key       []byte
	Headers   []byte
	Value     []byte
}

// Errors.
var (
	// ErrCorrupt marks data that fails its checksum or does not parse.
	// Test with errors.Is.
	ErrCorrupt = errors.New("log: corrupt batch")
	// ErrTorn marks a batch cut short at the end of a file.
	ErrTorn = errors.New("log: torn batch")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("log: closed")
	// ErrOutOfRange is returned for an offset before the low-water mark
	// (deleted) or past the high-water mark.
	ErrOutOfRange = errors.New("log: offset out of range")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// maskCRC makes a stored checksum unlike the data it covers, so that data
// which itself contains checksums (a log of logs) is not mistaken for a
// valid header. The same rotation and constant as LevelDB's.
func maskCRC(c uint32) uint32 { return (c>>15 | c<<17) + 0xa282ead8 }

// batchHeader is the decoded fixed header.
type batchHeader struct {
	codec      Codec
	baseOffset uint64
	count      uint32
	firstTs    int64
	maxTs      int64
	rawLen     uint32
	dataLen    uint32
	crc        uint32
}

func (h *batchHeader) size() int64        { return batchHeaderSize + int64(h.dataLen) }
func (h *batchHeader) nextOffset() uint64 { return h.baseOffset + uint64(h.count) }

func (h *batchHeader) encode(b []byte) {
	b[0], b[1], b[2], b[3] = batchMagic, batchVersion, byte(h.codec), 0
	binary.LittleEndian.PutUint64(b[4:], h.baseOffset)
	binary.LittleEndian.PutUint32(b[12:], h.count)
	binary.LittleEndian.PutUint64(b[16:], uint64(h.firstTs))
	binary.LittleEndian.PutUint64(b[24:], uint64(h.maxTs))
	binary.LittleEndian.PutUint32(b[32:], h.rawLen)
	binary.LittleEndian.PutUint32(b[36:], h.dataLen)
	binary.LittleEndian.PutUint32(b[crcPos:], h.crc)
}

// maxBatchData bounds dataLen and rawLen when decoding, so a corrupt length
// cannot make a reader allocate gigabytes.
const maxBatchData = 64 << 20

func decodeHeader(b []byte) (batchHeader, error) {
	if len(b) < batchHeaderSize {
		return batchHeader{}, ErrTorn
	}
	if b[0] != batchMagic || b[1] != batchVersion {
		return batchHeader{}, fmt.Errorf("%w: bad magic or version %#x %d", ErrCorrupt, b[0], b[1])
	}
	h := batchHeader{
		codec:      Codec(b[2]),
		baseOffset: binary.LittleEndian.Uint64(b[4:]),
		count:      binary.LittleEndian.Uint32(b[12:]),
		firstTs:    int64(binary.LittleEndian.Uint64(b[16:])),
		maxTs:      int64(binary.LittleEndian.Uint64(b[24:])),
		rawLen:     binary.LittleEndian.Uint32(b[32:]),
		dataLen:    binary.LittleEndian.Uint32(b[36:]),
		crc:        binary.LittleEndian.Uint32(b[crcPos:]),
	}
	if h.codec > CodecZstd || h.dataLen > maxBatchData || h.rawLen > maxBatchData || h.count == 0 {
		return h, fmt.Errorf("%w: bad header (codec %d, data %d, raw %d, count %d)", ErrCorrupt, h.codec, h.dataLen, h.rawLen, h.count)
	}
	return h, nil
}

// checkCRC verifies a whole batch (header and data).
func checkCRC(h *batchHeader, batch []byte) error {
	c := crc32.Update(crc32.Checksum(batch[:crcPos], castagnoli), castagnoli, batch[batchHeaderSize:])
	if maskCRC(c) != h.crc {
		return fmt.Errorf("%w: checksum mismatch at offset %d", ErrCorrupt, h.baseOffset)
	}
	return nil
}

// builder accumulates records into an uncompressed records block. Payload
// bytes are copied once, from the caller's buffer into raw.
type builder struct {
	raw     []byte
	count   uint32
	firstTs int64
	maxTs   int64
}

func (b *builder) reset() { *b = builder{raw: b.raw[:0]} }

func (b *builder) add(r *Record) {
	if b.count == 0 {
		b.firstTs, b.maxTs = r.Timestamp, r.Timestamp
	}
	delta := r.Timestamp - b.firstTs
	if delta < 0 { // timestamps are kept monotonic within a batch
		delta = 0
	}
	if r.Timestamp > b.maxTs {
		b.maxTs = r.Timestamp
	}
	b.raw = binary.AppendUvarint(b.raw, uint64(delta))
	b.raw = binary.AppendUvarint(b.raw, uint64(len(r.Key)))
	b.raw = append(b.raw, r.Key...)
	b.raw = binary.AppendUvarint(b.raw, uint64(len(r.Headers)))
	b.raw = append(b.raw, r.Headers...)
	b.raw = binary.AppendUvarint(b.raw, uint64(len(r.Value)))
	b.raw = append(b.raw, r.Value...)
	b.count++
}

// seal compresses the block and returns the whole batch (header + data)
// appended to dst: the bytes the segment writer writes in one call.
func (b *builder) seal(dst []byte, codec Codec, base uint64) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, batchHeaderSize)...)
	switch codec {
	case CodecS2:
		dst = appendS2(dst, b.raw)
	case CodecZstd:
		dst = zstdEncoder().EncodeAll(b.raw, dst)
	default:
		dst = append(dst, b.raw...)
	}
	h := batchHeader{codec: codec, baseOffset: base, count: b.count, firstTs: b.firstTs, maxTs: b.maxTs,
		rawLen: uint32(len(b.raw)), dataLen: uint32(len(dst) - start - batchHeaderSize)}
	hb := dst[start : start+batchHeaderSize]
	h.encode(hb)
	c := crc32.Update(crc32.Checksum(hb[:crcPos], castagnoli), castagnoli, dst[start+batchHeaderSize:])
	h.crc = maskCRC(c)
	binary.LittleEndian.PutUint32(hb[crcPos:], h.crc)
	return dst
}

func appendS2(dst, src []byte) []byte {
	n := s2.MaxEncodedLen(len(src))
	if cap(dst)-len(dst) < n {
		nd := make([]byte, len(dst), len(dst)+n)
		copy(nd, dst)
		dst = nd
	}
	enc := s2.Encode(dst[len(dst):len(dst)+n], src)
	return dst[:len(dst)+len(enc)]
}

var (
	zstdOnce    sync.Once
	zstdEnc     *zstd.Encoder
	zstdDec     *zstd.Decoder
	zstdInitErr error
)

func zstdInit() {
	zstdEnc, zstdInitErr = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if zstdInitErr == nil {
		zstdDec, zstdInitErr = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(maxBatchData))
	}
	if zstdInitErr != nil {
		panic("log: zstd: " + zstdInitErr.Error()) // only on impossible options
	}
}

func zstdEncoder() *zstd.Encoder { zstdOnce.Do(zstdInit); return zstdEnc }
func zstdDecoder() *zstd.Decoder { zstdOnce.Do(zstdInit); return zstdDec }

// decodeBatch verifies and decodes a whole batch into records appended to
// dst. Record slices point into scratch (the decompressed block), which the
// caller owns.
func decodeBatch(batch []byte, scratch []byte, dst []Record) ([]Record, []byte, error) {
	h, err := decodeHeader(batch)
	if err != nil {
		return dst, scratch, err
	}
	if int64(len(batch)) < h.size() {
		return dst, scratch, ErrTorn
	}
	batch = batch[:h.size()]
	if err := checkCRC(&h, batch); err != nil {
		return dst, scratch, err
	}
	data := batch[batchHeaderSize:]
	var raw []byte
	switch h.codec {
	case CodecS2:
		n, err := s2.DecodedLen(data)
		if err != nil || n != int(h.rawLen) {
			return dst, scratch, fmt.Errorf("%w: s2 length %d, header says %d: %v", ErrCorrupt, n, h.rawLen, err)
		}
		if cap(scratch) < n {
			scratch = make([]byte, n)
		}
		raw, err = s2.Decode(scratch[:n], data)
		if err != nil {
			return dst, scratch, fmt.Errorf("%w: s2: %v", ErrCorrupt, err)
		}
	case CodecZstd:
		raw, err = zstdDecoder().DecodeAll(data, scratch[:0])
		if err != nil || len(raw) != int(h.rawLen) {
			return dst, scratch, fmt.Errorf("%w: zstd: %v", ErrCorrupt, err)
		}
		scratch = raw
	default:
		raw = data
	}
	return parseRecords(&h, raw, dst, scratch)
}

func parseRecords(h *batchHeader, raw []byte, dst []Record, scratch []byte) ([]Record, []byte, error) {
	field := func() ([]byte, bool) {
		n, k := binary.Uvarint(raw)
		if k <= 0 || n > uint64(len(raw)-k) {
			return nil, false
		}
		f := raw[k : k+int(n)]
		raw = raw[k+int(n):]
		return f, true
	}
	for i := uint32(0); i < h.count; i++ {
		delta, k := binary.Uvarint(raw)
		if k <= 0 {
			return dst, scratch, fmt.Errorf("%w: record %d of batch at %d", ErrCorrupt, i, h.baseOffset)
		}
		raw = raw[k:]
		key, ok1 := field()
		hdr, ok2 := field()
		val, ok3 := field()
		if !ok1 || !ok2 || !ok3 {
			return dst, scratch, fmt.Errorf("%w: record %d of batch at %d", ErrCorrupt, i, h.baseOffset)
		}
		dst = append(dst, Record{Offset: h.baseOffset + uint64(i), Timestamp: h.firstTs + int64(delta),
			Key: key, Headers: hdr, Value: val})
	}
	if len(raw) != 0 {
		return dst, scratch, fmt.Errorf("%w: %d trailing bytes in batch at %d", ErrCorrupt, len(raw), h.baseOffset)
	}
	return dst, scratch, nil
}
