package events

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tandemswitch/tandem/events/eventpb"
)

func started(i int) *eventpb.CallStarted {
	return &eventpb.CallStarted{Caller: fmt.Sprintf("sip:alice%d@example.test", i), Callee: "sip:bob@example.test",
		Offer: []byte("v=0\r\n")}
}

func TestUnwrapReturnsTheWrappedPayloadWithoutDecoding(t *testing.T) {
	msg := started(1)
	env, err := Wrap(msg, time.Unix(1700000000, 0), "n1", nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Unwrap(env)
	if err != nil {
		t.Fatal(err)
	}
	if got != proto.Message(msg) {
		t.Fatalf("Unwrap of a fresh envelope decoded a copy (%p), want the wrapped message (%p)", got, msg)
	}

	// A shallow copy sharing Data (as a store publishes it) gets it too.
	shallow := &eventpb.Envelope{Type: env.Type, Data: env.Data, Stream: "call-1", Version: 1, Position: 9}
	if got, err := Unwrap(shallow); err != nil || got != proto.Message(msg) {
		t.Fatalf("Unwrap of a copy sharing Data: %p, %v; want the wrapped message (%p)", got, err, msg)
	}

	// The same event read back (another envelope with the same bytes) is
	// decoded, to an equal message.
	copied := proto.Clone(env).(*eventpb.Envelope)
	got, err = Unwrap(copied)
	if err != nil {
		t.Fatal(err)
	}
	if got == proto.Message(msg) || !proto.Equal(got, msg) {
		t.Fatalf("Unwrap of a copy: got %v (same pointer: %v), want an equal decoded message", got, got == proto.Message(msg))
	}
}

func TestUnwrapMemoIsBounded(t *testing.T) {
	first, err := Wrap(started(0), time.Unix(1700000000, 0), "n1", nil)
	if err != nil {
		t.Fatal(err)
	}
	firstMsg, _ := Unwrap(first)
	for i := 1; i <= memoSize; i++ {
		if _, err := Wrap(started(i), time.Unix(1700000000, 0), "n1", nil); err != nil {
			t.Fatal(err)
		}
	}
	payloads.mu.Lock()
	n := len(payloads.m)
	payloads.mu.Unlock()
	if n > memoSize {
		t.Fatalf("memo holds %d payloads, want at most %d", n, memoSize)
	}
	got, err := Unwrap(first)
	if err != nil {
		t.Fatal(err)
	}
	if got == firstMsg {
		t.Fatalf("the oldest envelope's payload is still memoised after %d newer ones", memoSize)
	}
	if !proto.Equal(got, firstMsg) {
		t.Fatalf("evicted envelope decodes to %v, want %v", got, firstMsg)
	}
}

func TestUnwrapAs(t *testing.T) {
	env, err := Wrap(started(2), time.Unix(1700000000, 0), "n1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := UnwrapAs[*eventpb.CallStarted](env); err != nil || m.GetCaller() != "sip:alice2@example.test" {
		t.Fatalf("UnwrapAs CallStarted: %v, %v", m, err)
	}
	if _, err := UnwrapAs[*eventpb.CallEnded](env); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("UnwrapAs of the wrong type: err %v, want ErrCorrupt", err)
	}
	unknown := &eventpb.Envelope{Type: "tandem.v9.Nothing", Position: 7}
	if _, err := UnwrapAs[*eventpb.CallEnded](unknown); !errors.Is(err, ErrUnknownType) {
		t.Fatalf("UnwrapAs of an unknown type: err %v, want ErrUnknownType", err)
	}
	bad := proto.Clone(env).(*eventpb.Envelope)
	bad.Data = []byte{0xff, 0xff}
	if _, err := UnwrapAs[*eventpb.CallStarted](bad); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("UnwrapAs of bytes that do not decode: err %v, want ErrCorrupt", err)
	}
}

// Writers wrap while readers unwrap (go test -race).
func TestUnwrapMemoConcurrent(t *testing.T) {
	const writers, each = 4, 3000
	envs := make(chan *eventpb.Envelope, 64)
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				env, err := Wrap(started(w*each+i), time.Unix(1700000000, 0), "n1", nil)
				if err != nil {
					t.Error(err)
					return
				}
				envs <- env
			}
		}(w)
	}
	go func() { wg.Wait(); close(envs) }()
	n := 0
	for env := range envs {
		m, err := UnwrapAs[*eventpb.CallStarted](env)
		if err != nil {
			t.Fatal(err)
		}
		var want eventpb.CallStarted
		if err := proto.Unmarshal(env.GetData(), &want); err != nil || !proto.Equal(m, &want) {
			t.Fatalf("envelope %d: Unwrap %v, its bytes %v (%v)", n, m, &want, err)
		}
		n++
	}
	if n != writers*each {
		t.Fatalf("read %d envelopes, want %d", n, writers*each)
	}
}
