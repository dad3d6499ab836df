package embedded

import (
	"fmt"
	"log/slog"
	"time"
)

// Defaults for the zero values of Options.
const (
	DefaultMaxBatch        = 4096
	DefaultCacheSize       = 64 << 20
	DefaultMemTableSize    = 16 << 20
	DefaultStreamCacheSize = 65536
	// DefaultTailSize is the default of Options.TailSize.
	DefaultTailSize = 8192
	// MaxStreamLen is the longest stream name Append accepts, in bytes.
	MaxStreamLen = 4096
)

// Options configure a Store. The zero value of every field but Dir means
// "use the default".
type Options struct {
	// Dir is the directory holding the store (Pebble's files). Required. It
	// is created when missing. Keep it on the disk whose durability you rely
	// on: an fsync on tmpfs proves nothing.
	Dir string

	// MaxBatch is the most events the committer puts in one group commit
	// (one Pebble batch, one fsync), in events. Default 4096. Larger groups
	// spread an fsync over more appends; smaller ones bound the latency a
	// burst adds to the appends behind it. An Append with more events than
	// MaxBatch is not refused: it is committed as a group of its own.
	MaxBatch int

	// CommitWindow is how long the committer, having taken the first
	// append of a group, waits for more before it writes and fsyncs the
	// group. Zero (the default) waits for nothing: the group is whatever
	// queued during the previous fsync. A window of a few hundred
	// microseconds trades that much latency for fewer fsyncs, which cost
	// CPU on most file systems.
	CommitWindow time.Duration

	// CacheSize is Pebble's block cache, in bytes. Default 64 MiB: enough to
	// keep the recent history that subscribers and recovering actors read hot,
	// small enough to sit beside the switch's own memory.
	CacheSize int64

	// MemTableSize is the size of one Pebble memtable, in bytes. Default
	// 16 MiB (Pebble keeps at most two before stalling writes, so up to
	// 32 MiB). A larger memtable means fewer flushes but more WAL to replay
	// at Open after a crash.
	MemTableSize uint64

	// StreamCacheSize is how many streams' current versions the committer
	// keeps in memory (least recently used are evicted), in streams. Default
	// 65536, roughly 10 MiB with typical stream names. A miss costs one
	// reverse seek in Pebble inside the committer's critical section, so size
	// it above the number of streams written concurrently (live calls,
	// registrations); it need not hold every stream ever written.
	StreamCacheSize int

	// TailSize is how many of the latest events are kept decoded in memory
	// for subscribers that follow live, in events. Default 8192 (a few MiB).
	// A subscriber further behind reads from Pebble. Negative disables it.
	TailSize int

	// ReadOnly opens an existing store for reading only: nothing is
	// created or written (Append fails with ErrReadOnly), and a missing
	// directory is an error. Pebble still takes the directory's lock, so
	// a store a running node has open cannot be opened (ErrLocked): tools
	// read a live node through its HTTP API instead.
	ReadOnly bool

	// OnAppend, when set, is called once for every Append with the time
	// Append took (including waiting for the group's fsync), the number of
	// events it carried and its error (nil on success). Called concurrently,
	// from the appending goroutines; it must be fast and must not call Append.
	OnAppend func(latency time.Duration, events int, err error)

	// Logger receives the store's and Pebble's messages. Pebble's routine
	// messages (flushes, compactions, WAL recovery) go at Debug; background
	// errors, slow disks and write stalls at Warn. Default: discard.
	Logger *slog.Logger
}

// withDefaults returns a copy of o with defaults filled in, or an error
// naming the field that is invalid.
func (o Options) withDefaults() (Options, error) {
	if o.Dir == "" {
		return o, fmt.Errorf("embedded: Options.Dir is required")
	}
	if o.MaxBatch < 0 {
		return o, fmt.Errorf("embedded: Options.MaxBatch is %d, want >= 0", o.MaxBatch)
	}
	if o.MaxBatch == 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	if o.CacheSize < 0 {
		return o, fmt.Errorf("embedded: Options.CacheSize is %d, want >= 0", o.CacheSize)
	}
	if o.CacheSize == 0 {
		o.CacheSize = DefaultCacheSize
	}
	if o.MemTableSize == 0 {
		o.MemTableSize = DefaultMemTableSize
	}
	if o.StreamCacheSize < 0 {
		return o, fmt.Errorf("embedded: Options.StreamCacheSize is %d, want >= 0", o.StreamCacheSize)
	}
	if o.TailSize == 0 {
		o.TailSize = DefaultTailSize
	}
	if o.StreamCacheSize == 0 {
		o.StreamCacheSize = DefaultStreamCacheSize
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}
