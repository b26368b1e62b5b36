package presence

import (
	"slices"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func TestLivenessSeen(t *testing.T) {
	l := NewLiveness(3 * time.Second)
	steps := []struct {
		node string
		at   time.Duration
		want bool
	}{
		{"a", 0, true},
		{"a", time.Second, false},
		{"b", time.Second, true},
		{"a", 10 * time.Second, false}, // Seen never expires by itself
	}
	for i, s := range steps {
		if got := l.Seen(s.node, t0.Add(s.at)); got != s.want {
			t.Errorf("step %d: Seen(%q): got %v, want %v", i, s.node, got, s.want)
		}
	}
	if got := l.Alive(); got != 2 {
		t.Errorf("got Alive %d, want 2", got)
	}
}

func TestLivenessExpire(t *testing.T) {
	const down = 3 * time.Second
	tests := []struct {
		name      string
		seen      map[string]time.Duration // node -> last heartbeat after t0
		now       time.Duration
		wantDead  []string
		wantAlive []string
	}{
		{"nobody", nil, time.Hour, nil, nil},
		{"silent for less than down-after", map[string]time.Duration{"a": 0}, down - time.Nanosecond, nil, []string{"a"}},
		{"silent for exactly down-after is alive", map[string]time.Duration{"a": 0}, down, nil, []string{"a"}},
		{"silent for just over down-after is dead", map[string]time.Duration{"a": 0}, down + time.Nanosecond, []string{"a"}, nil},
		{"only the silent one", map[string]time.Duration{"a": 0, "b": 2 * time.Second, "c": 5 * time.Second}, 5 * time.Second, []string{"a"}, []string{"b", "c"}},
		{"several at once", map[string]time.Duration{"a": 0, "b": time.Second, "c": 5 * time.Second}, 5 * time.Second, []string{"a", "b"}, []string{"c"}},
		{"a clock that went back expires nothing", map[string]time.Duration{"a": 10 * time.Second}, 0, nil, []string{"a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewLiveness(down)
			for n, at := range tt.seen {
				l.Seen(n, t0.Add(at))
			}
			dead := l.Expire(t0.Add(tt.now))
			slices.Sort(dead)
			if !slices.Equal(dead, tt.wantDead) {
				t.Errorf("got dead %v, want %v", dead, tt.wantDead)
			}
			alive := l.Nodes()
			slices.Sort(alive)
			if !slices.Equal(alive, tt.wantAlive) {
				t.Errorf("got alive %v, want %v", alive, tt.wantAlive)
			}
			if got := l.Alive(); got != len(tt.wantAlive) {
				t.Errorf("got Alive %d, want %d", got, len(tt.wantAlive))
			}
			for _, n := range tt.wantDead {
				if l.IsAlive(n) {
					t.Errorf("IsAlive(%q) after expiry: got true, want false", n)
				}
			}
			for _, n := range tt.wantAlive {
				if !l.IsAlive(n) {
					t.Errorf("IsAlive(%q): got false, want true", n)
				}
			}
			// An expired node is reported once; a second expiry at the same time finds nothing.
			if again := l.Expire(t0.Add(tt.now)); len(again) != 0 {
				t.Errorf("second Expire: got %v, want nothing", again)
			}
		})
	}
}

func TestLivenessHeartbeatKeepsAlive(t *testing.T) {
	l := NewLiveness(3 * time.Second)
	l.Seen("a", t0)
	for s := 1; s <= 10; s++ {
		now := t0.Add(time.Duration(s) * time.Second)
		l.Seen("a", now)
		if dead := l.Expire(now); len(dead) != 0 {
			t.Fatalf("at %ds with a heartbeat every second: got dead %v, want none", s, dead)
		}
	}
	if dead := l.Expire(t0.Add(14 * time.Second)); !slices.Equal(dead, []string{"a"}) {
		t.Errorf("4s after the last heartbeat: got dead %v, want [a]", dead)
	}
	if !l.Seen("a", t0.Add(15*time.Second)) {
		t.Errorf("heartbeat after expiry: got Seen false, want true (a newly alive node)")
	}
}

func TestLivenessForget(t *testing.T) {
	l := NewLiveness(3 * time.Second)
	l.Seen("a", t0)
	l.Seen("b", t0)
	tests := []struct {
		node string
		want bool
	}{
		{"a", true},
		{"a", false},
		{"zz", false},
	}
	for i, tt := range tests {
		if got := l.Forget(tt.node); got != tt.want {
			t.Errorf("step %d: Forget(%q): got %v, want %v", i, tt.node, got, tt.want)
		}
	}
	if l.IsAlive("a") || !l.IsAlive("b") || l.Alive() != 1 {
		t.Errorf("after Forget(a): got IsAlive(a)=%v IsAlive(b)=%v Alive=%d, want false true 1", l.IsAlive("a"), l.IsAlive("b"), l.Alive())
	}
	if dead := l.Expire(t0.Add(time.Hour)); !slices.Equal(dead, []string{"b"}) {
		t.Errorf("a forgotten node is not reported dead: got %v, want [b]", dead)
	}
	if !l.Seen("a", t0.Add(time.Hour)) {
		t.Errorf("Seen after Forget: got false, want true")
	}
}
