#!/usr/bin/env bash
# Build the code archive for the KubeRay RayJob (cluster/kuberay/rayjob.yaml) and print its sha256.
#
#   cluster/package-code.sh [REV] [OUT]      # defaults: HEAD, ${TMPDIR:-/tmp}/raysim-<commit>.zip
#
# The archive is `git archive` of a commit (committed files only, a single top-level directory
# raysim/), so anyone can rebuild it from the same commit and get the same bytes and hash. Upload
# it anywhere the cluster can reach over HTTPS, then set in rayjob.yaml (submitterPodTemplate env):
#   RAYSIM_CODE_URL     the HTTPS URL of the uploaded file
#   RAYSIM_CODE_SHA256  the hash printed below
# The RayJob's submitter refuses to submit anything whose sha256 differs.
set -euo pipefail
rev="${1:-HEAD}"
cd "$(git rev-parse --show-toplevel)"
# Outside the checkout by default, so that `ray job submit --working-dir .` does not upload it.
out="${2:-${TMPDIR:-/tmp}/raysim-$(git rev-parse --short "$rev").zip}"
git archive --format=zip --prefix=raysim/ -o "$out" "$rev"
sha="$(python3 -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$out")"
echo "$sha  $out"
echo "commit: $(git rev-parse "$rev")"
echo "set RAYSIM_CODE_SHA256 in cluster/kuberay/rayjob.yaml to: $sha"
