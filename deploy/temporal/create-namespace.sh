#!/bin/sh
# Creates the namespace metalflow runs in and the search attributes its
# workflows upsert (the workers also ensure them at start).
set -eu
: "${TEMPORAL_ADDRESS:?}" "${NAMESPACE:?}"
temporal operator namespace describe --namespace "$NAMESPACE" >/dev/null 2>&1 ||
  temporal operator namespace create --namespace "$NAMESPACE" --retention 720h
# name:type, as workflows.SearchAttributes() lists them.
for sa in ServerSerial:Keyword Rack:Keyword LifecycleStep:Keyword LifecycleState:Keyword LifecycleStepStartedAt:Datetime; do
  temporal operator search-attribute create --namespace "$NAMESPACE" --name "${sa%%:*}" --type "${sa#*:}" ||
    echo "search attribute ${sa%%:*} exists"
done
echo "namespace $NAMESPACE ready"
