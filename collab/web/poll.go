package web

import (
	"errors"
	"math"
	"time"

	"github.com/gofiber/fiber/v2"

	"collabd/collab"
)

// errPollGone ends a long-polling session whose client stopped polling.
var errPollGone = &collab.CloseError{Code: collab.CodeNormal, Reason: "no poll for too long: open a new session"}

// pollSession is the long-polling side of an httpSession. Its writer goroutine owns the
// session from the join to the leave: it answers the outstanding poll as soon as the
// outbox holds something, and ends the session when nobody polls for PollTimeout +
// PollGrace.
type pollSession struct {
	polls chan *pollWaiter // unbuffered: a poll hands itself to the writer
	done  chan struct{}    // closed when the writer ended
}

// pollWaiter is one outstanding poll; the writer answers it exactly once.
type pollWaiter struct {
	answer chan pollAnswer // capacity 1
}

// pollAnswer is what a poll returns: the frames as a JSON array, and the close when the
// session ended.
type pollAnswer struct {
	messages []byte
	close    *collab.CloseError
}

var noMessages = []byte("[]")

// pollGet is GET /poll/{doc}: without sid it opens a session, with sid it polls.
func (s *Server) pollGet(c *fiber.Ctx) error {
	c.Set(fiber.HeaderCacheControl, "no-store")
	if c.Query("sid") != "" {
		if !s.originAllowed(c) {
			return jsonError(c, fiber.StatusForbidden, "origin not allowed")
		}
		hs, err := s.lookup(c, transportPoll)
		if hs == nil {
			return err
		}
		return s.answerPoll(c, hs, false)
	}
	o, err := s.checkOpen(c)
	if o == nil {
		return err
	}
	conn := s.newConn(o.slot, nativeEncoder{}, nil)
	hs := s.newHTTPSession(transportPoll, o, conn)
	hs.poll = &pollSession{polls: make(chan *pollWaiter), done: make(chan struct{})}
	m, cerr := s.joinNative(conn, o.doc, o.user, o.ident, "")
	hs.member = m
	close(hs.joined)
	if cerr != nil {
		conn.out.Close(cerr)
		conn.ended()
		conn.finish()
		s.endHTTPSession(hs)
		close(hs.poll.done)
		return s.writePoll(c, hs, true, pollAnswer{messages: noMessages, close: conn.out.Closed()})
	}
	s.handlers.Add(1)
	go hs.poll.run(s, hs) // owned by the server: Shutdown waits for it
	return s.answerPoll(c, hs, true)
}

// answerPoll hands the request to the session's writer and answers what it gets.
func (s *Server) answerPoll(c *fiber.Ctx, hs *httpSession, open bool) error {
	w := &pollWaiter{answer: make(chan pollAnswer, 1)}
	select {
	case hs.poll.polls <- w:
	case <-hs.poll.done:
		s.sessMu.Lock()
		final := hs.final
		s.sessMu.Unlock()
		return sendGone(c, final)
	}
	return s.writePoll(c, hs, open, <-w.answer)
}

// writePoll writes {"sid"?,"messages":[...],"close"?}.
func (s *Server) writePoll(c *fiber.Ctx, hs *httpSession, open bool, a pollAnswer) error {
	b := make([]byte, 0, len(a.messages)+128)
	b = append(b, '{')
	if open {
		b = append(b, `"sid":"`...)
		b = append(b, hs.sid...)
		b = append(b, `",`...)
	}
	b = append(b, `"messages":`...)
	b = append(b, a.messages...)
	if a.close != nil {
		b = append(b, `,"close":`...)
		b = appendClose(b, a.close)
	}
	b = append(b, '}')
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Send(b)
}

// pollSink collects a batch's frames into a JSON array.
type pollSink struct {
	buf []byte
	n   int
}

var errBinaryOverPoll = errors.New("web: binary frames cannot go over long polling")

func (p *pollSink) frame(binary bool, data []byte) error {
	if binary {
		return errBinaryOverPoll
	}
	if p.n == 0 {
		p.buf = append(p.buf[:0], '[')
	} else {
		p.buf = append(p.buf, ',')
	}
	p.buf = append(p.buf, data...)
	p.n++
	return nil
}

// take returns the array collected and starts a new one.
func (p *pollSink) take() []byte {
	if p.n == 0 {
		return noMessages
	}
	b := append(p.buf, ']')
	p.buf, p.n = nil, 0
	return b
}

// run is the session's writer, from the join to the end of the session.
func (p *pollSession) run(s *Server, hs *httpSession) {
	c := hs.c
	cfg := &s.cfg
	idleAfter := cfg.PollTimeout + cfg.PollGrace
	idle := time.NewTimer(idleAfter) // runs while no poll is outstanding
	defer idle.Stop()
	wait := time.NewTimer(math.MaxInt64) // the outstanding poll's timeout
	defer wait.Stop()
	var cur *pollWaiter
	defer func() {
		if r := recover(); r != nil {
			c.panicked("poll writer", r)
		}
		s.hub.Leave(hs.member.sess)
		c.out.Close(errClientGone) // no effect when it closed already, as it did mostly
		if cur != nil {
			cur.answer <- pollAnswer{messages: noMessages, close: c.out.Closed()}
		}
		c.ended()
		s.endHTTPSession(hs)
		close(p.done)
		c.finish()
		s.handlers.Add(-1)
	}()
	sink := &pollSink{}
	w := frameWriter{sink: sink, stale: &c.stale}
	var events []collab.Event
	var cursors collab.Cursors
	queued, vanished := false, false
	for {
		select {
		case pw := <-p.polls:
			if cur != nil {
				cur.answer <- pollAnswer{messages: noMessages} // a newer poll replaces it
			}
			cur, queued = pw, true
			idle.Stop()
			wait.Reset(cfg.PollTimeout)
		case <-c.out.Wake():
			queued = true
		case <-wait.C:
			if cur != nil {
				cur.answer <- pollAnswer{messages: noMessages}
				cur = nil
				idle.Reset(idleAfter)
			}
			continue
		case <-idle.C:
			c.out.Close(errPollGone)
			queued, vanished = true, true
		}
		if cur == nil {
			// What is queued waits for the next poll; a session that ended waits for one
			// to say how, unless its client is gone or the server is stopping.
			if c.out.Closed() != nil && (vanished || s.isStopping()) {
				return
			}
			continue
		}
		if !queued {
			continue
		}
		queued = false
		var cerr *collab.CloseError
		events, cerr = c.out.Drain(events[:0], &cursors)
		err := c.enc.encode(&w, events, &cursors)
		clear(events)
		if err != nil && err != errStale {
			s.log.Error("poll encode", "err", err)
			c.out.Close(collab.ErrInternal)
			cerr = c.out.Closed()
		}
		if sink.n == 0 && cerr == nil {
			continue
		}
		cur.answer <- pollAnswer{messages: sink.take(), close: cerr}
		cur = nil
		if cerr != nil {
			return
		}
		idle.Reset(idleAfter)
	}
}
