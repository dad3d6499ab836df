package gateway

import (
	"bytes"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"
)

// The writer delivers every queued datagram intact and in order, in
// batches, and a destination the kernel refuses does not hold up the rest.
func TestUDPWriterDeliversBatches(t *testing.T) {
	src, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	_ = dst.SetReadBuffer(4 << 20)

	closed := make(chan struct{})
	defer close(closed)
	var pool sync.Pool
	var mu sync.Mutex
	var refused int
	w := newUDPWriter(src, &pool, closed, func(net.Addr, error) { mu.Lock(); refused++; mu.Unlock() })
	if w.batch == nil {
		t.Fatal("no sendmmsg batch writer on a UDP socket")
	}
	// Queue everything before the writer runs, so that it must batch.
	const n = 500
	bad := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 0} // port 0: EINVAL
	for i := 0; i < n; i++ {
		if i == 100 {
			w.send(bytes.NewBufferString("to nowhere"), bad)
		}
		w.send(bytes.NewBufferString(fmt.Sprintf("datagram %d", i)), dst.LocalAddr())
	}
	go w.run()

	buf := make([]byte, 2048)
	_ = dst.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i := 0; i < n; i++ {
		k, _, err := dst.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("after %d datagrams: %v", i, err)
		}
		if got, want := string(buf[:k]), fmt.Sprintf("datagram %d", i); got != want {
			t.Fatalf("datagram %d: got %q", i, got)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if refused != 1 {
		t.Fatalf("refused datagrams reported: %d, want 1", refused)
	}
}

// Once the gateway is closed, send neither blocks nor sends.
func TestUDPWriterSendAfterClose(t *testing.T) {
	src, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	closed := make(chan struct{})
	var pool sync.Pool
	w := newUDPWriter(src, &pool, closed, func(net.Addr, error) {})
	close(closed)
	done := make(chan struct{})
	go func() {
		for i := 0; i < writeQueue+10; i++ {
			w.send(new(bytes.Buffer), src.LocalAddr())
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("send blocked after close")
	}
}
