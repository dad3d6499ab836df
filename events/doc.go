// Package events holds Tandem's event schemas (protobuf, in eventpb) and the
// Store contract every event store implements.
//
// The Store is the only way state is persisted. Its contract is the heart of
// ARCHITECTURE.md's invariants:
//
//   - One writer per stream: every Append carries the expected stream version
//     and fails with ErrVersionConflict when the stream has moved on. A writer
//     that gets this error has been superseded and must stop without acting.
//   - Durable before visible: Append returns only after the events are
//     durable; only then may the caller reveal the change (send a 200 OK ...).
//   - No gaps: global positions are assigned in commit order, and readers and
//     subscribers never see position N+1 before N.
//
// Implementations: events/embedded (the single-node default). The contract
// test suite in events/storetest runs against any implementation.
package events
