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
// The store fills stream, version and position on Append.
func Wrap(payload proto.Message, t time.Time, node string, cause *eventpb.Cause) (*eventpb.Envelope, error) {
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("events: marshal %s: %w", payload.ProtoReflect().Descriptor().FullName(), err)
	}
	return &eventpb.Envelope{
		Time:  timestamppb.New(t),
		Node:  node,
		Cause: cause,
		Type:  string(payload.ProtoReflect().Descriptor().FullName()),
		Data:  data,
	}, nil
}

// Unwrap decodes an envelope's payload. An unknown type returns an error
// wrapping ErrUnknownType, which readers skip and count rather than stop on.
func Unwrap(env *eventpb.Envelope) (proto.Message, error) {
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
