package collab_test

import (
	"context"
	"sync/atomic"
	"testing"

	"collabd/collab"
	"collabd/nats/natstest"
)

// BenchmarkLargeDocumentJoin measures joining a document of n members with 1 KiB presence
// states spread over three instances: on one of them (the document is open there: the state
// is local) and on a fourth (it opens the document, asks the others and waits for their
// snapshots, in parts). One op is a join until the newcomer holds the whole presence.state,
// then its leave: a join that waited SyncTimeout gets what arrived by then in its state and
// the rest as diffs, and the op ends when its view is whole. first-complete is the share of
// joins whose first presence.state was already whole. snapshot-B/op is the size of the
// snapshots the instances published for a cold join.
//
//	go test -run '^$' -bench LargeDocumentJoin -benchtime 20x ./collab/
func BenchmarkLargeDocumentJoin(b *testing.B) {
	for _, n := range []int{100, 1000, 3000} {
		b.Run("members="+itoa(n), func(b *testing.B) {
			ns := natstest.NewServer(b)
			var snapBytes, snaps atomic.Int64
			cfg := collab.Config{
				MaxMembers: 10000,
				OnSnapshot: func(n int) { snapBytes.Add(int64(n)); snaps.Add(1) },
			}
			hubs := make([]*collab.Hub, 4)
			for i := range hubs {
				hubs[i], _ = newHub(b, ns.URL(), cfg)
			}
			peersKnown(b, 3, hubs...)
			for i := range 3 {
				trackAll(b, hubs[i], "big", n/3+boolInt(i < n%3), 1<<10)
			}
			for _, where := range []struct {
				name string
				hub  *collab.Hub
			}{{"open-here", hubs[2]}, {"cold", hubs[3]}} {
				b.Run(where.name, func(b *testing.B) {
					snapBytes.Store(0)
					snaps.Store(0)
					complete := 0
					for b.Loop() {
						out := collab.NewOutbox(0)
						s, err := where.hub.Join(context.Background(), out, collab.JoinOptions{Doc: "big", User: "new", Present: true, Presence: true})
						if err != nil {
							b.Fatal(err)
						}
						m := &member{t: nil, s: s, out: out, state: map[string]string{}}
						m.sync()
						if len(m.state) == n+1 {
							complete++
						}
						for len(m.state) != n+1 {
							<-out.Wake()
							m.sync()
						}
						where.hub.Leave(s)
					}
					b.ReportMetric(float64(complete)/float64(b.N), "first-complete")
					if snaps.Load() > 0 {
						b.ReportMetric(float64(snapBytes.Load())/float64(b.N), "snapshot-B/op")
					}
				})
			}
		})
	}
}

func boolInt(v bool) int {
	if v {
		return 1
	}
	return 0
}
