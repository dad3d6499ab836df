// Package embedded is Tandem's single-node, durable event store: an
// implementation of events.Store kept in one directory on the local disk.
//
// # Why Pebble
//
// The store keeps its records in Pebble (github.com/cockroachdb/pebble), the
// storage engine of CockroachDB, rather than in a segment log of our own.
// Everything "durable" needs is already there and exercised far more than a
// log we would write: a write-ahead log whose records carry checksums, a
// recovery that cuts a torn tail off the newest log file and replays the
// rest, commits that return only after fdatasync (pebble.Sync), fsyncs of the
// directory after every file creation or rename, and a LOCK file so that two
// processes never open the same directory. On top of it this package adds
// only what an event store needs: the key layout, a per-record CRC-32C, the
// single committer that decides versions and positions, and subscriptions.
//
// # Group commit
//
// Append validates its input and marshals the envelopes on the caller's
// goroutine, then queues the request for the one committer goroutine. The
// committer drains the queue (up to Options.MaxBatch events) and, for the
// whole group, in its critical section:
//
//  1. checks each append's expected version against the stream's current
//     version; appends to the same stream inside one group are applied in
//     order, so the second sees the version left by the first, and a
//     rejected append takes nothing (no version, no position) from the others;
//  2. assigns stream versions and global positions in queue order;
//  3. writes every accepted record into one pebble.Batch and commits it with
//     pebble.Sync: one fsync for the group;
//  4. only then publishes the new head (readers and subscribers never see
//     beyond it) and answers every caller.
//
// Positions are therefore assigned in commit order and become visible in
// position order: there are no gaps for a subscriber to skip. After
// answering a group the committer yields once (runtime.Gosched), so that
// writers it has just answered and that append again at once join the next
// group instead of the one after it.
//
// # Keys and records
//
//	global order:  'e' | position (8 bytes big-endian)          -> record
//	stream index:  's' | uvarint(len(stream)) | stream | version (8 bytes BE)
//	                                                            -> position (8 bytes BE)
//	format:        "mformat"                                    -> "tandem-embedded/1"
//
//	record:
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|        CRC-32C (Castagnoli) of the envelope, big-endian       |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  eventpb.Envelope, protobuf, with stream, version and position  :
//	:  filled by the store                                            |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// The length prefix makes stream names unambiguous (no stream's keys are a
// prefix of another's). Reads verify the CRC and that the record names the
// position (and stream and version) it was found under; a mismatch is an
// error wrapping events.ErrCorrupt naming the position, never skipped. The
// head at Open is the last 'e' key. Check verifies the whole store.
//
// # Concurrency
//
// All methods are safe to call concurrently. Only the committer writes.
// Reads run on the caller's goroutine against Pebble and are bounded by the
// published head. Subscribe reads history in batches and, once caught up,
// waits on a channel the committer closes (and replaces) after each published
// commit, so a slow subscriber falls behind and reads history again instead
// of ever blocking an append.
//
// # Memory
//
// Pebble's block cache is 64 MiB and its memtables 16 MiB (at most two
// before writes stall), and the committer caches the versions of the 65536
// most recently written streams (about 10 MiB): some 110 MiB at most by
// default, sized to sit beside a switch rather than to be a database server.
// The stream cache is bounded because a switch writes a new stream for every
// call; a stream that fell out of it costs one reverse seek on its next
// append. See Options to change each.
//
// # Failure
//
// If a commit fails (an I/O error from Pebble) the store refuses every later
// append with that error: after a failed fsync the state of the log on disk is
// unknown, and retrying would risk assigning a position twice. Reads keep
// working. Restart the process (Close, Open) once the disk is healthy.
package embedded
