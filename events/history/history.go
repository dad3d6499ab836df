// Package history reads and writes recorded event histories: a JSON array
// of envelopes, one per line, each in protojson form (field names as in
// envelope.proto, the payload as base64 bytes, exactly as stored). It is the
// format of the recorded call and registration histories that golden tests
// replay (projections/replay/testdata), so a fixture is what an actor really
// wrote. Write is deterministic: the same envelopes give the same bytes.
package history

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/eventpb"
)

// Write writes envs as a history.
func Write(w io.Writer, envs []*eventpb.Envelope) error {
	var b bytes.Buffer
	b.WriteString("[\n")
	mo := protojson.MarshalOptions{UseProtoNames: true}
	for i, env := range envs {
		raw, err := mo.Marshal(env)
		if err != nil {
			return fmt.Errorf("history: event %d: %w", i+1, err)
		}
		// protojson varies its whitespace on purpose; compacting makes the
		// output stable.
		if err := json.Compact(&b, raw); err != nil {
			return fmt.Errorf("history: event %d: %w", i+1, err)
		}
		if i < len(envs)-1 {
			b.WriteByte(',')
		}
		b.WriteByte('\n')
	}
	b.WriteString("]\n")
	_, err := w.Write(b.Bytes())
	return err
}

// Read reads a history written by Write (or any JSON array of protojson
// envelopes). An element that is not an envelope is an error naming it.
func Read(r io.Reader) ([]*eventpb.Envelope, error) {
	var raws []json.RawMessage
	if err := json.NewDecoder(r).Decode(&raws); err != nil {
		return nil, fmt.Errorf("history: not a JSON array: %w", err)
	}
	envs := make([]*eventpb.Envelope, 0, len(raws))
	for i, raw := range raws {
		env := &eventpb.Envelope{}
		if err := protojson.Unmarshal(raw, env); err != nil {
			return nil, fmt.Errorf("history: event %d: %w", i+1, err)
		}
		envs = append(envs, env)
	}
	return envs, nil
}

// ReadFile reads the history in the file at path.
func ReadFile(path string) ([]*eventpb.Envelope, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	envs, err := Read(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return envs, nil
}

// Append appends a history to st, each event to its stream, in order. An
// event that names its version must land at that version (so a history
// never interleaves with a stream already in st: that is a version
// conflict); the store gives new positions.
func Append(ctx context.Context, st events.Store, envs []*eventpb.Envelope) error {
	for i, env := range envs {
		expected := events.AnyVersion
		if v := env.GetVersion(); v > 0 {
			expected = int64(v) - 1
		}
		if _, err := st.Append(ctx, env.GetStream(), expected, []*eventpb.Envelope{env}); err != nil {
			return fmt.Errorf("history: event %d: %w", i+1, err)
		}
	}
	return nil
}

// AppendFiles appends the histories in the files at paths to st, in order
// (see Append).
func AppendFiles(ctx context.Context, st events.Store, paths ...string) error {
	for _, path := range paths {
		envs, err := ReadFile(path)
		if err != nil {
			return err
		}
		if err := Append(ctx, st, envs); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	return nil
}

// ErrChanged is returned by CheckFile when a recorded history is no longer
// what was recorded now.
var ErrChanged = errors.New("history: recorded history changed")

// CheckFile compares envs with the history recorded in the file at path,
// or, when rewrite is set, records them there. It is how tests keep
// fixtures honest: a fixture recorded from an actor must stay what the
// actor writes. A difference is an error wrapping ErrChanged that carries
// the history as it is now.
func CheckFile(path string, envs []*eventpb.Envelope, rewrite bool) error {
	var now bytes.Buffer
	if err := Write(&now, envs); err != nil {
		return err
	}
	if rewrite {
		return os.WriteFile(path, now.Bytes(), 0o644)
	}
	was, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if !bytes.Equal(was, now.Bytes()) {
		return fmt.Errorf("%w: %s; now:\n%s", ErrChanged, path, now.String())
	}
	return nil
}
