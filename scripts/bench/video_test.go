package main

import "testing"

// TestFrameCounterCountsChainLinesAcrossWrites: the decoder's output arrives in pieces
// that cut lines anywhere; each fakesink chain line is one frame.
func TestFrameCounterCountsChainLinesAcrossWrites(t *testing.T) {
	out := "Setting pipeline to PAUSED ...\n" +
		"/GstPipeline:pipeline0/GstFakeSink:fakesink0: last-message = chain   ******* (fakesink0:sink) (1843200 bytes)\n" +
		"/GstPipeline:pipeline0/GstFakeSink:fakesink0: last-message = chain   ******* (fakesink0:sink) (1843200 bytes)\n" +
		"Got EOS from element \"pipeline0\".\n"
	var fc frameCounter
	for i := 0; i < len(out); i += 7 {
		fc.Write([]byte(out[i:min(i+7, len(out))]))
	}
	if got := fc.frames(); got != 2 {
		t.Fatalf("got %d frames, want 2", got)
	}
}
