package datagram

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"testing"
	"time"
)

// stuck is how long a test waits before deciding Pop is not coming back.
const stuck = 5 * time.Second

func TestQueueDropsOldestWhenFull(t *testing.T) {
	tests := []struct {
		name     string
		capacity int
		pushed   []string
		want     []string
		dropped  uint64
	}{
		{"a queue below capacity keeps everything in order", 3, []string{"a", "b"}, []string{"a", "b"}, 0},
		{"a queue at capacity keeps everything in order", 3, []string{"a", "b", "c"}, []string{"a", "b", "c"}, 0},
		{"one push beyond capacity drops the oldest", 3, []string{"a", "b", "c", "d"}, []string{"b", "c", "d"}, 1},
		{"many pushes beyond capacity keep the newest", 2, []string{"a", "b", "c", "d", "e"}, []string{"d", "e"}, 3},
		{"a queue of one keeps only the newest", 1, []string{"a", "b"}, []string{"b"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := NewQueue(tt.capacity)
			for _, p := range tt.pushed {
				if !q.Push([]byte(p)) {
					t.Fatalf("got Push(%q) refused on an open queue, want accepted", p)
				}
			}
			if got := q.Dropped(); got != tt.dropped {
				t.Errorf("got %d dropped, want %d", got, tt.dropped)
			}
			if got := q.Len(); got != len(tt.want) {
				t.Errorf("got Len %d, want %d", got, len(tt.want))
			}
			for _, want := range tt.want {
				b, err := q.Pop(context.Background())
				if err != nil || string(b) != want {
					t.Errorf("got Pop = %q, %v, want %q", b, err, want)
				}
			}
		})
	}
}

// TestQueuePushEvictingSaysWhichPushDropped: each push beyond capacity, and only such a
// push, reports the eviction it caused, and a closed queue reports neither.
func TestQueuePushEvictingSaysWhichPushDropped(t *testing.T) {
	q := NewQueue(2)
	for i, want := range []bool{false, false, true, true} {
		queued, evicted := q.PushEvicting([]byte{byte(i)})
		if !queued || evicted != want {
			t.Errorf("push %d: got queued %v evicted %v, want queued true evicted %v", i, queued, evicted, want)
		}
	}
	if got := q.Dropped(); got != 2 {
		t.Errorf("got %d dropped, want 2", got)
	}
	q.Close()
	if queued, evicted := q.PushEvicting([]byte{9}); queued || evicted {
		t.Errorf("push on a closed queue: got queued %v evicted %v, want false false", queued, evicted)
	}
}

func TestQueuePushCopies(t *testing.T) {
	q := NewQueue(2)
	buf := []byte("first")
	q.Push(buf)
	copy(buf, "XXXXX") // the UDP read loop reuses its buffer
	if b, _ := q.Pop(context.Background()); string(b) != "first" {
		t.Errorf("got %q, want %q", b, "first")
	}
}

func TestQueuePopWaitsForPush(t *testing.T) {
	q := NewQueue(DefaultQueueCapacity)
	got := make(chan string)
	go func() {
		b, _ := q.Pop(context.Background())
		got <- string(b)
	}()
	q.Push([]byte("late"))
	select {
	case s := <-got:
		if s != "late" {
			t.Errorf("got %q, want %q", s, "late")
		}
	case <-time.After(stuck):
		t.Fatalf("got Pop still blocked %v after Push, want it to return", stuck)
	}
}

func TestQueuePopUnblocks(t *testing.T) {
	tests := []struct {
		name string
		stop func(q *Queue, cancel context.CancelFunc)
		want error
	}{
		{"cancelling the context unblocks Pop", func(_ *Queue, cancel context.CancelFunc) { cancel() }, context.Canceled},
		{"closing the queue unblocks Pop", func(q *Queue, _ context.CancelFunc) { q.Close() }, ErrClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := NewQueue(DefaultQueueCapacity)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			errc := make(chan error)
			go func() {
				_, err := q.Pop(ctx)
				errc <- err
			}()
			tt.stop(q, cancel)
			select {
			case err := <-errc:
				if !errors.Is(err, tt.want) {
					t.Errorf("got Pop error %v, want %v", err, tt.want)
				}
			case <-time.After(stuck):
				t.Fatalf("got Pop still blocked %v later, want it to return", stuck)
			}
		})
	}
}

func TestQueueClosedRefusesPushAndDiscards(t *testing.T) {
	q := NewQueue(4)
	q.Push([]byte("queued"))
	q.Close()
	q.Close() // a second Close does nothing
	if q.Push([]byte("after")) {
		t.Errorf("got Push accepted after Close, want refused")
	}
	if _, err := q.Pop(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("got Pop error %v after Close, want %v", err, ErrClosed)
	}
}

func TestQueueOneProducerOneConsumer(t *testing.T) {
	const sent = 20_000
	q := NewQueue(8)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var wg sync.WaitGroup
	wg.Add(1)
	var received, outOfOrder uint64
	go func() {
		defer wg.Done()
		var last uint64
		for {
			b, err := q.Pop(ctx)
			if err != nil {
				return
			}
			seq := binary.BigEndian.Uint64(b)
			if received > 0 && seq <= last {
				outOfOrder++
			}
			last = seq
			received++
			if seq == sent-1 {
				return
			}
		}
	}()
	buf := make([]byte, 1200)
	for i := range uint64(sent) {
		binary.BigEndian.PutUint64(buf, i)
		q.Push(buf)
	}
	wg.Wait()
	if outOfOrder != 0 {
		t.Errorf("got %d datagrams out of order, want 0", outOfOrder)
	}
	if got := received + q.Dropped(); got != sent {
		t.Errorf("got %d received + %d dropped = %d, want %d sent", received, q.Dropped(), got, sent)
	}
}

func TestQueueAllocatesNothingOnceWarm(t *testing.T) {
	q := NewQueue(4)
	ctx := context.Background()
	b := make([]byte, 1200)
	for range 8 {
		q.Push(b)
		q.Pop(ctx)
	}
	allocs := testing.AllocsPerRun(100, func() {
		q.Push(b)
		q.Pop(ctx)
	})
	if allocs != 0 {
		t.Errorf("got %v allocations per Push and Pop, want 0", allocs)
	}
}

// TestQueueDropsStale: with a maximum age, Pop skips datagrams that waited too long (a
// blackout's backlog) and returns the fresh ones, counting what it skipped.
func TestQueueDropsStale(t *testing.T) {
	q := NewQueue(8)
	q.SetMaxAge(50 * time.Millisecond)
	q.Push([]byte("old-1"))
	q.Push([]byte("old-2"))
	time.Sleep(60 * time.Millisecond) // older than the maximum age
	q.Push([]byte("fresh"))
	got, err := q.Pop(context.Background())
	if err != nil || string(got) != "fresh" {
		t.Fatalf("Pop = %q, %v; want the fresh datagram", got, err)
	}
	if q.Stale() != 2 || q.Len() != 0 {
		t.Fatalf("stale %d, queued %d; want 2 and 0", q.Stale(), q.Len())
	}
}

// TestQueueBoundedByBytes: with a byte bound a Push drops the oldest datagrams until
// the new one fits, whatever room the count leaves.
func TestQueueBoundedByBytes(t *testing.T) {
	q := NewQueue(100)
	q.SetMaxBytes(3000)
	for i := range 5 {
		b := make([]byte, 1000)
		b[0] = byte(i)
		_, evicted := q.PushEvicting(b)
		if want := i >= 3; evicted != want {
			t.Fatalf("push %d: evicted %v, want %v", i, evicted, want)
		}
	}
	if q.Len() != 3 || q.Dropped() != 2 {
		t.Fatalf("got %d queued, %d dropped; want 3 and 2", q.Len(), q.Dropped())
	}
	b, err := q.Pop(context.Background())
	if err != nil || b[0] != 2 {
		t.Fatalf("popped %v (%v), want datagram 2, the oldest kept", b[0], err)
	}
	q.Push(make([]byte, 1000)) // fits once 1,000 bytes were popped
	if q.Len() != 3 || q.Dropped() != 2 {
		t.Fatalf("got %d queued, %d dropped; want 3 and 2", q.Len(), q.Dropped())
	}
	q.Push(make([]byte, 2500)) // room only once every older datagram is gone
	if q.Len() != 1 || q.Dropped() != 5 {
		t.Fatalf("got %d queued, %d dropped; want 1 and 5", q.Len(), q.Dropped())
	}
}
