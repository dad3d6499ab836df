package memstore

import (
	"sync"
	"testing"

	"github.com/tandemswitch/tandem/events"
	"github.com/tandemswitch/tandem/events/storetest"
)

// TestContract runs the store contract suite against the fake, so tests
// that use it rely on the same behaviour as the real stores.
func TestContract(t *testing.T) {
	var mu sync.Mutex
	byDir := map[string]*Store{}
	storetest.Run(t, func(t *testing.T, dir string) events.Store {
		mu.Lock()
		defer mu.Unlock()
		s := New()
		if old, ok := byDir[dir]; ok {
			s = old.Reopened()
		}
		byDir[dir] = s
		return s
	})
}
