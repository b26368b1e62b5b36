package collab

import "sync"

// worklist hands items to one goroutine, which takes everything queued at once: work is
// batched by draining, and pushing never blocks. Its length is bounded by its callers (a
// document or session is queued at most once until taken).
type worklist[T any] struct {
	mu    sync.Mutex
	items []T           // guarded by mu
	wake  chan struct{} // capacity 1: items is not empty
}

func newWorklist[T any]() *worklist[T] { return &worklist[T]{wake: make(chan struct{}, 1)} }

func (w *worklist[T]) push(x T) {
	w.mu.Lock()
	w.items = append(w.items, x)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// run calls fn for every item pushed, in order, until stop closes.
func (w *worklist[T]) run(stop <-chan struct{}, fn func(T)) {
	var batch []T
	var zero T
	for {
		select {
		case <-stop:
			return
		case <-w.wake:
		}
		w.mu.Lock()
		batch, w.items = w.items, batch[:0]
		w.mu.Unlock()
		for i, x := range batch {
			fn(x)
			batch[i] = zero
		}
	}
}
