#!/usr/bin/env bash
# metalflow's test command: the one the README gives and CI runs.
# It installs what the tests need that Go cannot fetch (Debian packages, when
# root on Debian), checks formatting and vet, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

# Debian packages the tests use (ironic-common: a real OpenStack Ironic for the
# cloud step, ~280 MB, 1.5-4 min; redfishtool and python3-sushy: independent
# Redfish clients the BMC simulator is tested with; bird2: the top-of-rack BGP
# peer of the LB nodes' speaker; postgresql: the inventory and the benchmark's
# PostgreSQL-backed Temporal against a throwaway server; qemu-system-x86,
# qemu-utils, ipxe-qemu, ovmf and ipxe: real VMs behind the simulator's qemu
# BMCs, netbooting with SeaBIOS or UEFI firmware; dnsmasq: a site's own DHCP
# beside metalflow's proxyDHCP; mmdebstrap, mtools, fdisk: the test OS image
# and its NoCloud seed; busybox-static, zstd: the deploy agent's initramfs and
# the images it streams).
# Installed only when missing and when we can (root with apt); without them
# the tests that need them skip and say why.
packages=(iproute2 ethtool ironic-common redfishtool python3-sushy bird2 chromium postgresql qemu-system-x86 qemu-utils ipxe-qemu ovmf ipxe dnsmasq mtools fdisk mmdebstrap busybox-static zstd)
if [ ${#packages[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
fi

echo "== gofmt"
# Generated bpf2go output is exempt; everything else, tracked or not, counts.
unformatted=$(find . -name '*.go' -not -path './.git/*' | grep -v -E '_bpfe[lb]\.go$' | xargs -r gofmt -l)
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

echo "== go vet"
go vet ./...

echo "== workflowcheck"
# Temporal's determinism checker over the workflows (a separate module, pinned).
# Built from the module cache when it is there, so it runs offline; otherwise
# fetched once through the Go module proxy.
wfc=go.temporal.io/sdk/contrib/tools/workflowcheck@v0.6.0
wfcbin=$(mktemp -d)
trap 'rm -rf "$wfcbin"' EXIT
if ! GOBIN="$wfcbin" GOPROXY="file://$(go env GOMODCACHE)/cache/download" go install "$wfc" 2>/dev/null; then
  GOBIN="$wfcbin" go install "$wfc"
fi
"$wfcbin/workflowcheck" -show-pos ./workflows/...

echo "== go test"
go test -count=1 -timeout 30m "$@" ./...
