package collab

import "context"

// Bus carries events between instances. It is declared here, in plain types, so that the
// nats package satisfies it without importing collab; the check sits in cmd/collabd.
type Bus interface {
	// Publish sends data on subject; it does not wait for delivery.
	Publish(subject string, data []byte) error
	// Subscribe calls fn for each message on subject (wildcards allowed), in order, until
	// unsubscribe is called.
	Subscribe(subject string, fn func(subject string, data []byte)) (unsubscribe func() error, err error)
	// Flush returns once the server has processed everything sent so far.
	Flush(ctx context.Context) error
	// Connected reports whether the bus is connected now; while it is not, publishes are
	// buffered and subscriptions take effect on reconnection.
	Connected() bool
	// DocSubject names the subject of kind for document doc ("*" for every document);
	// the id is encoded so that it can never break the subject syntax.
	DocSubject(doc, kind string) string
	// DocFromSubject returns the document a DocSubject subject names.
	DocFromSubject(subject string) (doc string, ok bool)
	// NodeSubject names an instance-wide subject of kind.
	NodeSubject(kind string) string
}

// Subject kinds.
const (
	kindCursor   = "cursor"
	kindBcast    = "bcast"
	kindPresence = "presence"
	kindSync     = "sync"
	kindReplay   = "replay"
	kindHB       = "hb"
	kindBye      = "bye"
	anyDoc       = "*"
)
