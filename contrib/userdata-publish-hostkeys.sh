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
#     beyond the one-use URL. The file's first line binds it to the host name users type
#     (HOST_NAME, substituted like the URL) and to a time:
#
#         # sshpin-hostkeys v1 host=web1 generated_at=2026-11-22T10:00:00Z expires=2026-12-22T10:00:00Z
#
#     sshpin refuses a signed file whose header names another host (one VM's file served
#     for another), that has expired, or that is older than one it already accepted.
#  3. Your automation, not the VM, vouches for the keys: it fetches staging/<vm-id>.pub over
#     its own authenticated channel, signs it with the operator key whose public half is in
#     every user's signing_keys, and publishes the file and its signature where sshpin looks:
#
#         ssh-keygen -Y sign -f ops_signing_key -n sshpin-hostkeys hostkeys/web1.pub
#         # -> hostkeys/web1.pub.sig; upload both to {url} and {url}.sig, public-read
#
#     The signing key never leaves the operator's machine or CI secret store. sshpin then
#     accepts the keys only with a valid signature by that key (namespace sshpin-hostkeys),
#     whoever controls the bucket or its TLS certificate. Before signing, check that the
#     header names the VM you created. The signature covers the header, and a file is good
#     for at most 30 days: re-sign before it expires, with fresh times, e.g.
#
#         now=$(date -u +%s); fmt=+%Y-%m-%dT%H:%M:%SZ
#         sed -i "1s/generated_at=[^ ]* expires=.*/generated_at=$(date -u -d @$now $fmt) \
#         expires=$(date -u -d @$((now + 30*86400)) $fmt)/" hostkeys/web1.pub
#
# Requires: POSIX sh and curl (both in common cloud images).
set -eu

UPLOAD_URL=${UPLOAD_URL:-'@PRESIGNED_PUT_URL@'}   # substituted by your provisioning automation
HOST_NAME=${HOST_NAME:-'@HOST_NAME@'}             # the name users ssh to; substituted likewise
VALID_DAYS=${VALID_DAYS:-30}                      # at most 30 (sshpin refuses longer)
KEY_DIR=${KEY_DIR:-/etc/ssh}

case "$UPLOAD_URL" in
  https://*) ;;
  *) echo "publish-hostkeys: UPLOAD_URL must be an https:// presigned URL" >&2; exit 1 ;;
esac
case "$HOST_NAME" in
  ''|*[!A-Za-z0-9.:_-]*) echo "publish-hostkeys: HOST_NAME must be a host name" >&2; exit 1 ;;
esac
case "$VALID_DAYS" in
  ''|*[!0-9]*) echo "publish-hostkeys: VALID_DAYS must be a number of days" >&2; exit 1 ;;
esac
[ "$VALID_DAYS" -ge 1 ] && [ "$VALID_DAYS" -le 30 ] || {
  echo "publish-hostkeys: VALID_DAYS must be 1 to 30" >&2; exit 1; }

# sshd makes its host keys on first boot; wait for them for up to two minutes.
tries=0
while ! ls "$KEY_DIR"/ssh_host_*_key.pub >/dev/null 2>&1; do
  tries=$((tries + 1))
  [ "$tries" -le 120 ] || { echo "publish-hostkeys: no host keys appeared" >&2; exit 1; }
  sleep 1
done

keys=$(mktemp)
trap 'rm -f "$keys"' EXIT
# The binding header (covered by the operator's signature), then the public halves only;
# DSA keys are left out (sshpin refuses them anyway).
now=$(date -u +%s)
stamp() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || date -u -r "$1" +%Y-%m-%dT%H:%M:%SZ; }
printf '# sshpin-hostkeys v1 host=%s generated_at=%s expires=%s\n' \
  "$(printf %s "$HOST_NAME" | tr 'A-Z' 'a-z')" "$(stamp "$now")" \
  "$(stamp $((now + VALID_DAYS * 86400)))" > "$keys"
for f in "$KEY_DIR"/ssh_host_*_key.pub; do
  case "$f" in *_dsa_key.pub) continue ;; esac
  cut -d' ' -f1,2 "$f" >> "$keys"
done

# --fail: an HTTP error is an error; the presigned URL carries its own authorization.
curl --fail --silent --show-error --proto '=https' --tlsv1.2 \
  --retry 5 --retry-delay 3 \
  -H 'Content-Type: text/plain' -T "$keys" "$UPLOAD_URL"
echo "publish-hostkeys: uploaded $(($(wc -l < "$keys") - 1)) host key(s) for $HOST_NAME"
