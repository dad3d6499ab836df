package clock

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestFakeFiresDueTimersOnly(t *testing.T) {
	c := NewFake(time.Unix(1000, 0))
	var fired atomic.Int32
	done := make(chan struct{}, 2)
	c.AfterFunc(time.Second, func() { fired.Add(1); done <- struct{}{} })
	late := c.AfterFunc(time.Hour, func() { fired.Add(100) })
	c.Advance(500 * time.Millisecond)
	if c.Pending() != 2 {
		t.Fatalf("pending = %d, want 2", c.Pending())
	}
	c.Advance(500 * time.Millisecond)
	<-done
	if got := fired.Load(); got != 1 {
		t.Fatalf("fired = %d, want 1", got)
	}
	if !late.Stop() {
		t.Fatal("Stop of a pending timer reported false")
	}
	if c.Pending() != 0 {
		t.Fatalf("pending = %d, want 0", c.Pending())
	}
	if want := time.Unix(1001, 0); !c.Now().Equal(want) {
		t.Fatalf("now = %v, want %v", c.Now(), want)
	}
}
