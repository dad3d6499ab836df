package events

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tandemswitch/tandem/events/eventpb"
)

// Wrap builds an envelope for payload, decided at t by node because of cause.
// payload must not be modified afterwards: Unwrap of the envelope (or of a
// copy sharing its Data) returns it.
// The store fills stream, version and position on Append.
func Wrap(payload proto.Message, t time.Time, node string, cause *eventpb.Cause) (*eventpb.Envelope, error) {
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("events: marshal %s: %w", payload.ProtoReflect().Descriptor().FullName(), err)
	}
	env := &eventpb.Envelope{
		Time:  timestamppb.New(t),
		Node:  node,
		Cause: cause,
		Type:  string(payload.ProtoReflect().Descriptor().FullName()),
		Data:  data,
	}
	payloads.put(env, payload)
	return env, nil
}

// Unwrap decodes an envelope's payload. An unknown type returns an error
// wrapping ErrUnknownType, which readers skip and count rather than stop on.
//
// For an envelope Wrap built recently, or a copy sharing its Data (what the
// embedded store publishes), Unwrap returns the payload Wrap was given,
// without decoding: the writer and every reader share that message,
// so no one may modify what Unwrap returns (the folds only read).
func Unwrap(env *eventpb.Envelope) (proto.Message, error) {
	if msg := payloads.get(env); msg != nil {
		return msg, nil
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(env.GetType()))
	if err != nil {
		return nil, fmt.Errorf("%w: %q at position %d", ErrUnknownType, env.GetType(), env.GetPosition())
	}
	msg := mt.New().Interface()
	if err := proto.Unmarshal(env.GetData(), msg); err != nil {
		return nil, fmt.Errorf("%w: %s at position %d: %v", ErrCorrupt, env.GetType(), env.GetPosition(), err)
	}
	return msg, nil
}

// UnwrapAs is Unwrap for a reader that knows the payload's type from the
// envelope's: a payload of another type is an error wrapping ErrCorrupt.
func UnwrapAs[T proto.Message](env *eventpb.Envelope) (T, error) {
	var zero T
	msg, err := Unwrap(env)
	if err != nil {
		return zero, err
	}
	m, ok := msg.(T)
	if !ok {
		return zero, fmt.Errorf("%w: %s at position %d is a %T, not a %T", ErrCorrupt, env.GetType(), env.GetPosition(), msg, zero)
	}
	return m, nil
}
