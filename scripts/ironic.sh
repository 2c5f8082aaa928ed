#!/usr/bin/env bash
# A throwaway OpenStack Ironic on loopback for `metalflow dev --ironic-url`:
# installs Debian's ironic-common when missing (as root), then runs the same
# helper the tests use in the foreground; Ctrl-C stops it by PID.
set -euo pipefail
cd "$(dirname "$0")/.."

export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

if [ ! -x /usr/bin/ironic ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "== installing ironic-common (1.5-4 min)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ironic-common
  else
    echo "ironic-common is not installed; run as root on Debian or install it" >&2
    exit 1
  fi
fi

# The helper starts Ironic without REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE:
# common on corporate images, either makes python-requests ignore a node's
# redfish_verify_ca=false, and then no self-signed BMC can be reached.
exec go run ./internal/testironic/cmd/ironic
