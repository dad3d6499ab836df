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
//  2. assigns stream versions and global positions in queue order, and links
//     each record to the one before (see Tamper evidence);
//  3. writes every accepted record, and the new head anchor, into one
//     pebble.Batch and commits it with pebble.Sync: one fsync for the group;
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
//	format:        "mformat"                                    -> "tandem-embedded/2"
//	head anchor:   "mhead"     -> last position (8 bytes BE) | SHA-256 of its envelope (32 bytes)
//
//	record:
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|        CRC-32C (Castagnoli) of the envelope, big-endian       |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  eventpb.Envelope, protobuf, fields in number order:            :
//	:  1-3 stream, version, position (filled by the store)            :
//	:  4-8 time, node, cause, type, data (the writer's)               :
//	:  9   prev_hash: SHA-256 of the previous record's envelope       :
//	:      (filled by the store; 32 zero bytes at position 1)         :
//	:  then any unknown fields the writer's envelope carried          |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// The envelope bytes are exactly what proto.Marshal gives for the decoded
// envelope, so anyone holding the envelopes can recompute the chain.
// The length prefix makes stream names unambiguous (no stream's keys are a
// prefix of another's). Reads verify the CRC and that the record names the
// position (and stream and version) it was found under; a mismatch is an
// error wrapping events.ErrCorrupt naming the position, never skipped. The
// head at Open is the last 'e' key. Check and Verify check the whole store.
//
// Open refuses a "tandem-embedded/1" store: it predates the hash chain,
// and this package has no converter for it.
//
// # Tamper evidence
//
// Every event's prev_hash is the SHA-256 of the previous event's envelope
// bytes (the record without its CRC), so each event vouches for the whole
// history before it. The committer computes the links as it assigns
// positions (one SHA-256 per event, on its goroutine) and keeps the hash of
// the head in memory; Open recomputes it from the last record. Every group
// commit also writes the head anchor, the last position and its hash, in
// the same batch, so the anchor always names the last record.
//
// Verify (`tandem audit verify`) walks the log and reports the first
// problem with its position: an event altered (its checksum fails, or its
// hash is no longer what the next event, or the anchor for the last event,
// recorded), missing (a gap, or the anchor names a position past the end)
// or out of order (a record under a position it does not name, or one its
// stream's index does not place there). Where a link breaks between k-1
// and k, the event after k decides which changed: if it still vouches for
// k, k-1 changed; if not, k is not the event written there (say, moved
// there with its position field rewritten). Open refuses to append to a
// store whose log does not end where its anchor says, as appending would
// overwrite the anchor and with it the evidence.
//
// What the chain does not prove: it holds no secret. Someone with the files
// who rewrites an event, every record after it (each link and checksum) and
// the anchor leaves a log that verifies as intact; so does someone who
// cuts the newest events and rewrites the anchor to the new end. Such a
// rewrite changes the head hash, so it is caught by comparing the head hash
// Verify prints with one recorded elsewhere before (a ticket, a log
// shipped off the host, a second node). Keep the head hash of each audit.
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
