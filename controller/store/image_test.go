package store

import (
	"bytes"
	"testing"
)

// FuzzCheckImage: the image check never panics, and whatever it accepts is at least as
// long as its meta page says.
func FuzzCheckImage(f *testing.F) {
	s, err := Open(f.TempDir() + "/seed.db")
	if err != nil {
		f.Fatal(err)
	}
	snap, _ := s.Snapshot()
	var image bytes.Buffer
	snap.WriteTo(&image)
	snap.Release()
	s.Close()
	f.Add(image.Bytes())
	f.Add(image.Bytes()[:image.Len()/2])
	f.Add(image.Bytes()[:100])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		err := checkImage(bytes.NewReader(data), int64(len(data)))
		if err == nil {
			m, _ := readMeta(bytes.NewReader(data), 0)
			if m == nil {
				m, _ = readMeta(bytes.NewReader(data), 4096)
			}
			if m == nil {
				t.Fatal("accepted an image without a valid meta page")
			}
		}
	})
}
