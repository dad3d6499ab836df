package gateway

import (
	"bytes"
	"net"
	"sync"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// udpWriter sends every datagram the gateway answers on one UDP socket from
// a single goroutine, in batches of up to writeBatch per sendmmsg(2).
//
// Why: Go serializes writes on a socket with a per-descriptor lock. With
// thousands of handlers answering at once (each REGISTER waits out a group
// commit, then every one of that group answers together) the lock became a
// convoy: a goroutine dump of the server at 14,000 REGISTER/s showed over
// 3,000 goroutines queued on it, the scheduler's run queue grew, the store's
// committer waited its turn behind them (appends took 200-400 ms) and the
// step collapsed with the server at 60% of a core. One writer never waits on
// the lock, and a queue that builds up turns into bigger batches, so fewer
// syscalls, instead of more waiting goroutines. golang.org/x/net's
// ipv4/ipv6 PacketConn gives sendmmsg on Linux (and a loop elsewhere).
type udpWriter struct {
	conn   net.PacketConn
	batch  func([]ipv4.Message) (int, error) // nil: one WriteTo per datagram
	out    chan outDatagram
	bufs   *sync.Pool // of *bytes.Buffer; the writer puts them back
	closed <-chan struct{}
	onErr  func(to net.Addr, err error)
}

type outDatagram struct {
	buf *bytes.Buffer
	to  net.Addr
}

const (
	writeQueue = 8192 // datagrams waiting for the writer
	writeBatch = 64   // datagrams per sendmmsg
)

func newUDPWriter(conn net.PacketConn, bufs *sync.Pool, closed <-chan struct{}, onErr func(net.Addr, error)) *udpWriter {
	w := &udpWriter{conn: conn, out: make(chan outDatagram, writeQueue), bufs: bufs, closed: closed, onErr: onErr}
	if uc, ok := conn.(*net.UDPConn); ok {
		if a, ok := uc.LocalAddr().(*net.UDPAddr); ok && a.IP.To4() != nil {
			pc := ipv4.NewPacketConn(uc)
			w.batch = func(ms []ipv4.Message) (int, error) { return pc.WriteBatch(ms, 0) }
		} else {
			pc := ipv6.NewPacketConn(uc)
			w.batch = func(ms []ipv4.Message) (int, error) { return pc.WriteBatch(ms, 0) }
		}
	}
	return w
}

// send queues buf for to; the writer returns buf to the pool once sent.
// It blocks while the queue is full (backpressure on the handlers) and
// drops the datagram once the gateway is closed.
func (w *udpWriter) send(buf *bytes.Buffer, to net.Addr) {
	select {
	case w.out <- outDatagram{buf: buf, to: to}:
	case <-w.closed:
		w.bufs.Put(buf)
	}
}

// run sends until the gateway closes.
func (w *udpWriter) run() {
	pending := make([]outDatagram, 0, writeBatch)
	msgs := make([]ipv4.Message, writeBatch)
	for {
		select {
		case d := <-w.out:
			pending = append(pending[:0], d)
		case <-w.closed:
			return
		}
	drain:
		for len(pending) < writeBatch {
			select {
			case d := <-w.out:
				pending = append(pending, d)
			default:
				break drain
			}
		}
		w.write(pending, msgs)
		for i, d := range pending {
			w.bufs.Put(d.buf)
			pending[i] = outDatagram{}
		}
	}
}

// write sends pending, skipping (and reporting) a datagram the kernel
// refuses so that one bad destination does not hold up the rest.
func (w *udpWriter) write(pending []outDatagram, msgs []ipv4.Message) {
	if w.batch == nil {
		for _, d := range pending {
			if _, err := w.conn.WriteTo(d.buf.Bytes(), d.to); err != nil {
				w.onErr(d.to, err)
			}
		}
		return
	}
	for i, d := range pending {
		msgs[i] = ipv4.Message{Buffers: [][]byte{d.buf.Bytes()}, Addr: d.to}
	}
	for sent := 0; sent < len(pending); {
		n, err := w.batch(msgs[sent:len(pending)])
		sent += max(n, 0) // -1 on an error before the first datagram
		if err != nil {
			// sendmmsg reports the first datagram it could not send
			// after sending n; skip that one.
			if sent < len(pending) {
				w.onErr(pending[sent].to, err)
				sent++
			}
		} else if n == 0 {
			break // cannot happen with len > 0; never spin
		}
	}
	for i := range pending {
		msgs[i] = ipv4.Message{}
	}
}

// writerConn is the socket as sipgo sees it: reads go straight to the
// socket, writes (sipgo's responses, retransmissions and requests on UDP)
// are copied and queued on the socket's writer, so they join its batches
// rather than queue on the descriptor's write lock.
type writerConn struct {
	net.PacketConn
	w *udpWriter
}

func (c *writerConn) WriteTo(b []byte, to net.Addr) (int, error) {
	buf, _ := c.w.bufs.Get().(*bytes.Buffer)
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	buf.Reset()
	buf.Write(b)
	c.w.send(buf, to)
	return len(b), nil
}
