package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestLBNodeFlagsAreChecked(t *testing.T) {
	for name, args := range map[string][]string{
		"no iface":     {"--config", "x.yaml"},
		"no mode":      {"--iface", "eth0"},
		"two modes":    {"--iface", "eth0", "--stats", "--detach"},
		"bad xdp mode": {"--iface", "eth0", "--stats", "--xdp-mode", "fast"},
		"stray arg":    {"--iface", "eth0", "--stats", "extra"},
		"unknown flag": {"--iface", "eth0", "--bogus"},
	} {
		var out, errOut bytes.Buffer
		assert.Error(t, runLBNode(context.Background(), args, &out, &errOut), name)
		assert.Empty(t, out.String(), name)
	}
}

func TestDecapFlagsAreChecked(t *testing.T) {
	for name, args := range map[string][]string{
		"no iface":     {},
		"both actions": {"--iface", "eth0", "--stats", "--detach"},
		"bad xdp mode": {"--iface", "eth0", "--xdp-mode", "fast"},
	} {
		var out, errOut bytes.Buffer
		assert.Error(t, runDecap(context.Background(), args, &out, &errOut), name)
	}
}
