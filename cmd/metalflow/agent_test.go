package main

import (
	"maps"
	"testing"
)

func TestKernelParams(t *testing.T) {
	got := kernelParams(`BOOT_IMAGE=/vmlinuz console=ttyS0 quiet metalflow.url=http://10.0.0.1:8080 metalflow.token="t0k" ro`)
	want := map[string]string{
		"BOOT_IMAGE": "/vmlinuz", "console": "ttyS0",
		"metalflow.url": "http://10.0.0.1:8080", "metalflow.token": "t0k",
	}
	if !maps.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}
