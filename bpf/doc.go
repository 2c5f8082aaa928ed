// Package bpf holds metalflow's XDP programs (C source beside this file) and
// the Go bindings bpf2go generates for them. The generated object is
// committed, so building metalflow needs no clang; regenerate after editing
// the C with `go generate ./bpf` (needs clang, llvm and libbpf-dev).
package bpf

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target bpfel -type vip_key -type vip_meta -type vip_addr -type backend -type flow_key -type flow_backend -type lb_config -type counter -type member_key -type member Lb xdp_lb.c -- -I/usr/include/x86_64-linux-gnu -O2 -g -Wall -Werror
