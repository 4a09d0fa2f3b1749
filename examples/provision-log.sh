#!/bin/sh
# The quick start's provisioner: it grants nothing anywhere. It appends each
# grant or revoke it is given (one JSON document on stdin) to
# provisioned.jsonl beside this script, so the whole flow (request, approve,
# provision, expiry, revoke) can be watched end to end. Replace it with a
# real provisioner before governing real access (README, "Provisioners").
set -eu
{ cat; echo; } >> "$(dirname "$0")/provisioned.jsonl"
