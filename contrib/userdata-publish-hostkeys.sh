#!/bin/sh
# sshpin: publish a new VM's public host keys to object storage, for a provider of
# type = "url" (see sshpin.conf(5)). Give this file to cloud-init as the VM's user data.
#
# The trust chain, and who does what:
#
#  1. Your provisioning automation creates the VM and, for it alone, a presigned PUT URL for
#     an upload location only this VM is told (for example staging/<vm-id>.pub in a private
#     bucket, valid for an hour). It substitutes that URL below. No long-lived credential
#     is ever put in user data.
#  2. On first boot, after sshd has made its host keys, this script uploads
#     /etc/ssh/ssh_host_*_key.pub to that URL. It contains no private key, and no secret
#     beyond the one-use URL.
#  3. Your automation, not the VM, vouches for the keys: it fetches staging/<vm-id>.pub over
#     its own authenticated channel, signs it with the operator key whose public half is in
#     every user's signing_keys, and publishes the file and its signature where sshpin looks:
#
#         ssh-keygen -Y sign -f ops_signing_key -n sshpin-hostkeys hostkeys/web1.pub
#         # -> hostkeys/web1.pub.sig; upload both to {url} and {url}.sig, public-read
#
#     The signing key never leaves the operator's machine or CI secret store. sshpin then
#     accepts the keys only with a valid signature by that key (namespace sshpin-hostkeys),
#     whoever controls the bucket or its TLS certificate.
#
# Requires: POSIX sh and curl (both in common cloud images).
set -eu

UPLOAD_URL=${UPLOAD_URL:-'@PRESIGNED_PUT_URL@'}   # substituted by your provisioning automation
KEY_DIR=${KEY_DIR:-/etc/ssh}

case "$UPLOAD_URL" in
  https://*) ;;
  *) echo "publish-hostkeys: UPLOAD_URL must be an https:// presigned URL" >&2; exit 1 ;;
esac

# sshd makes its host keys on first boot; wait for them for up to two minutes.
tries=0
while ! ls "$KEY_DIR"/ssh_host_*_key.pub >/dev/null 2>&1; do
  tries=$((tries + 1))
  [ "$tries" -le 120 ] || { echo "publish-hostkeys: no host keys appeared" >&2; exit 1; }
  sleep 1
done

keys=$(mktemp)
trap 'rm -f "$keys"' EXIT
# Public halves only; DSA keys are left out (sshpin refuses them anyway).
for f in "$KEY_DIR"/ssh_host_*_key.pub; do
  case "$f" in *_dsa_key.pub) continue ;; esac
  cut -d' ' -f1,2 "$f" >> "$keys"
done

# --fail: an HTTP error is an error; the presigned URL carries its own authorization.
curl --fail --silent --show-error --proto '=https' --tlsv1.2 \
  --retry 5 --retry-delay 3 \
  -H 'Content-Type: text/plain' -T "$keys" "$UPLOAD_URL"
echo "publish-hostkeys: uploaded $(wc -l < "$keys") host key(s)"
