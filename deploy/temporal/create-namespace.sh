#!/bin/sh
# Creates the namespace metalflow runs in and the search attributes its
# workflows upsert (the workers also ensure them at start).
set -eu
: "${TEMPORAL_ADDRESS:?}" "${NAMESPACE:?}"
temporal operator namespace describe --namespace "$NAMESPACE" >/dev/null 2>&1 ||
  temporal operator namespace create --namespace "$NAMESPACE" --retention 720h
for sa in ServerSerial Rack LifecycleStep; do
  temporal operator search-attribute create --namespace "$NAMESPACE" --name "$sa" --type Keyword ||
    echo "search attribute $sa exists"
done
echo "namespace $NAMESPACE ready"
