package transport

import "testing"

// TestStatelessResetKeyOutlivesRestarts: the same secret always gives the same key (a
// restarted node resets its old connections), another secret another key.
func TestStatelessResetKeyOutlivesRestarts(t *testing.T) {
	a1, err := StatelessResetKey([]byte("node key a"))
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := StatelessResetKey([]byte("node key a"))
	b, _ := StatelessResetKey([]byte("node key b"))
	if *a1 != *a2 {
		t.Errorf("same secret gave two keys")
	}
	if *a1 == *b {
		t.Errorf("two secrets gave the same key")
	}
	if _, err := StatelessResetKey(nil); err == nil {
		t.Errorf("empty secret: got a key, want an error")
	}
}
