package main

import (
	"slices"
	"testing"
)

func TestPrometheusModulesReadsOnlyPrometheusDeps(t *testing.T) {
	versionM := "bin/umbra: go1.25.0\n\tpath\tumbra/cmd/umbra\n\tmod\tumbra\t(devel)\t\n" +
		"\tdep\tgithub.com/prometheus/client_golang\tv1.23.0\th1:x=\n" +
		"\tdep\tgithub.com/prometheus/procfs\tv0.16.1\th1:y=\n" +
		"\tdep\tgithub.com/umbranet/umbra/third_party/quic-go\tv0.65.0\n\tbuild\t-ldflags=github.com/prometheus/\n"
	if got, want := prometheusModules(versionM), []string{"client_golang", "procfs"}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if got := prometheusModules("bin/umbra-agent: go1.25.0\n\tdep\tgithub.com/umbranet/umbra/third_party/quic-go\tv0.65.0\n"); len(got) != 0 {
		t.Errorf("agent without prometheus: got %v, want none", got)
	}
}
