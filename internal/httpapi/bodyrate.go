package httpapi

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

// Defaults of the minimum request body data rate: after 10 s, a body must
// have arrived at 1 KiB/s on average. A client on the worst working link
// sends faster; one that sends slower holds a request slot for nothing.
const (
	DefaultMinBodyRate      = 1024 // bytes per second
	DefaultMinBodyRateGrace = 10 * time.Second
)

// bodyRate is the minimum request body data rate.
type bodyRate struct {
	perSec int           // bytes per second; 0: no minimum
	grace  time.Duration // before any byte is due
	limit  time.Duration // the server's read timeout (0: none)
}

func newBodyRate(cfg Config) bodyRate {
	if cfg.MinBodyRate < 0 {
		return bodyRate{}
	}
	b := bodyRate{perSec: cfg.MinBodyRate, grace: cfg.MinBodyRateGrace, limit: cfg.ReadTimeout}
	if b.perSec == 0 {
		b.perSec = DefaultMinBodyRate
	}
	if b.grace <= 0 {
		b.grace = DefaultMinBodyRateGrace
	}
	return b
}

// minBodyRate cuts off a request whose body arrives slower than the
// minimum rate, answering 408 and closing the connection, so that a client
// trickling bytes frees its request slot after seconds rather than holding
// it for the whole --read-timeout. As Apache's mod_reqtimeout does, the
// body must have come whole by the grace period plus one second per
// perSec bytes received: every read gets that deadline on the connection,
// so a read blocked waiting for bytes returns when it passes. The
// deadline never goes past --read-timeout from the request's start.
func (s *Server) minBodyRate(next http.Handler) http.Handler {
	if s.bodyRate.perSec == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		b := &rateBody{ReadCloser: r.Body, rate: s.bodyRate, start: time.Now(), rc: http.NewResponseController(w), deadlines: true}
		sw := &slowBodyWriter{ResponseWriter: w, body: b, r: r}
		r2 := *r
		r2.Body = b
		next.ServeHTTP(sw, &r2)
		if b.cut != "" {
			// The handler answered the failed read as it does any (400)
			// or not at all: say what happened instead.
			sw.replace()
		}
		if b.err == nil && b.deadlines {
			// Whatever of the body the handler left unread, the server
			// reads to keep the connection; not for longer than the
			// client has left.
			_ = b.rc.SetReadDeadline(later(b.deadline(), time.Now().Add(b.rate.grace)))
		}
	})
}

// rateBody is a request body whose reads have the minimum rate's
// deadline.
type rateBody struct {
	io.ReadCloser
	rate  bodyRate
	start time.Time
	rc    *http.ResponseController
	// deadlines is false once the connection refused one (the reads are
	// then only checked when they return).
	deadlines bool
	n         int64
	// err is the error a read returned (io.EOF at the end): no deadline
	// is set after it, as the server then reads the connection itself.
	err error
	// cut says why the body was cut off ("" it wasn't).
	cut string
}

// errBodyTooSlow is the read error of a body cut off.
var errBodyTooSlow = errors.New("request body arrived too slowly")

func (b *rateBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	dl := b.deadline()
	if b.deadlines && b.rc.SetReadDeadline(dl) != nil {
		b.deadlines = false
	}
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	if err == nil && !b.deadlines && time.Now().After(b.deadline()) {
		err = os.ErrDeadlineExceeded
	}
	if err != nil && timeout(err) {
		if b.rate.limit > 0 && !dl.Before(b.start.Add(b.rate.limit)) {
			b.cut = fmt.Sprintf("the request body did not arrive whole within %v (--read-timeout)", b.rate.limit)
		} else {
			b.cut = fmt.Sprintf("the request body arrived slower than %d bytes per second (--min-body-rate, after --min-body-rate-grace %v); %d bytes came in %v",
				b.rate.perSec, b.rate.grace, b.n, time.Since(b.start).Round(time.Millisecond))
		}
		err = fmt.Errorf("%w: %s", errBodyTooSlow, b.cut)
	}
	if err != nil {
		b.err = err
	}
	return n, err
}

// deadline is when the body must have come further than it has: the
// grace period plus one second per rate.perSec bytes received, capped by
// the read timeout.
func (b *rateBody) deadline() time.Time {
	secs := min(float64(b.n)/float64(b.rate.perSec), 1e9) // 31 years: no overflow
	allowed := b.rate.grace + time.Duration(secs*float64(time.Second))
	if b.rate.limit > 0 && allowed > b.rate.limit {
		allowed = b.rate.limit
	}
	return b.start.Add(allowed)
}

func timeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// slowBodyWriter answers 408 in place of the handler's answer once the
// body was cut off, unless the handler had answered already.
type slowBodyWriter struct {
	http.ResponseWriter
	body            *rateBody
	r               *http.Request
	wrote, replaced bool
}

func (w *slowBodyWriter) WriteHeader(code int) {
	if w.replace() {
		return
	}
	w.wrote = true
	w.ResponseWriter.WriteHeader(code)
}

func (w *slowBodyWriter) Write(p []byte) (int, error) {
	if w.replace() {
		return len(p), nil
	}
	w.wrote = true
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *slowBodyWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// replace writes the 408 if the body was cut off and nothing was written
// yet, and reports whether the handler's answer is to be dropped.
func (w *slowBodyWriter) replace() bool {
	if w.replaced {
		return true
	}
	if w.body.cut == "" || w.wrote {
		return false
	}
	w.replaced = true
	h := w.Header()
	clear(h)
	h.Set("Connection", "close")
	writeProblem(w.ResponseWriter, w.r, Problem{Status: http.StatusRequestTimeout,
		Detail: w.body.cut + "; send the body at once, or smaller requests"})
	return true
}
