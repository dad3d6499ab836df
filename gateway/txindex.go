package gateway

import (
	"sync"

	"github.com/emiago/sipgo/sip"
)

// txIndex lets the UDP fast path find sipgo's transactions without going
// through sipgo's transaction layer, which starts a goroutine per message
// and, for an ACK no transaction claims, builds a server transaction only
// to drop it. It mirrors two of sipgo's own indexes, keyed the same way
// (RFC 3261 17.1.3 and 17.2.3):
//
//   - the INVITE server transactions of UDP callers, for the ACK of a
//     non-2xx final response, which belongs to the transaction (17.2.1)
//     and stops its retransmissions;
//   - every client transaction Tandem starts (Gateway.Request), for the
//     responses to it.
//
// An entry is added when the transaction is made and removed when sipgo
// ends it (OnTerminate), so it lives exactly as long as sipgo's own.
type txIndex struct {
	server sync.Map // key -> *sip.ServerTx
	client sync.Map // key -> *sip.ClientTx
}

// addServer indexes an INVITE server transaction.
func (x *txIndex) addServer(tx *sip.ServerTx) {
	key := tx.Key()
	x.server.Store(key, tx)
	if !tx.OnTerminate(func(string, error) { x.server.CompareAndDelete(key, tx) }) {
		x.server.CompareAndDelete(key, tx) // already ended
	}
}

// addClient indexes a client transaction.
func (x *txIndex) addClient(tx *sip.ClientTx) {
	key := tx.Key()
	x.client.Store(key, tx)
	if !tx.OnTerminate(func(string, error) { x.client.CompareAndDelete(key, tx) }) {
		x.client.CompareAndDelete(key, tx)
	}
}

// serverFor returns the INVITE server transaction an ACK belongs to: one
// for a non-2xx response, which carries the INVITE's branch. An ACK for a
// 2xx is a transaction of its own (its branch is new) and finds none.
func (x *txIndex) serverFor(ack *sip.Request) *sip.ServerTx {
	key, err := sip.ServerTxKeyMake(ack)
	if err != nil {
		return nil
	}
	if tx, ok := x.server.Load(key); ok {
		return tx.(*sip.ServerTx)
	}
	return nil
}

// clientFor returns the client transaction a response belongs to.
func (x *txIndex) clientFor(res *sip.Response) *sip.ClientTx {
	key, err := sip.ClientTxKeyMake(res)
	if err != nil {
		return nil
	}
	if tx, ok := x.client.Load(key); ok {
		return tx.(*sip.ClientTx)
	}
	return nil
}
