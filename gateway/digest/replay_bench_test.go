package digest

import (
	"strconv"
	"testing"
	"time"
)

// BenchmarkReplayGuard accepts fresh nonces with a million already tracked
// (what a registrar serving 10,000 registrations/s holds after two
// minutes), garbage collections included.
func BenchmarkReplayGuard(b *testing.B) {
	g := newReplayGuard(1<<22, 5*time.Minute)
	now := time.Now()
	nonce := func(i int) string { return "MTczMjI3NjAwMDAwMDAwMDAw" + strconv.Itoa(i) + "aGVsbG8gd29ybGQ" }
	for i := range 1 << 20 {
		g.accept(nonce(i), 1, "tx", now)
	}
	keys := make([]string, 1<<16)
	for i := range keys {
		keys[i] = nonce(1<<21 + i)
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if !g.accept(keys[i%len(keys)], uint32(i/len(keys)+1), "tx", now) {
			b.Fatal("refused")
		}
	}
}
