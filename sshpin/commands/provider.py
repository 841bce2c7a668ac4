"""``sshpin provider check`` and ``sshpin publish``: the provider side, for operators and for
users who wonder why a provider is refused (provider_side/ holds the work)."""

from __future__ import annotations

import json
import sys

from sshpin.errors import EXIT_OK, EXIT_PROVIDER, UsageError


def _signing_keys(lines: list[str], files: list[str]) -> list[str]:
    from sshpin.core.keys import SIGNING_KEY_TYPES, parse_line

    out = []
    for text in [*lines, *(_read(f) for f in files)]:
        out.append(parse_line(text, SIGNING_KEY_TYPES).openssh())
    return out


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read(65536).strip()
    except OSError as e:
        raise UsageError(f"provider check: {path}: {e.strerror}") from None


def cmd_check(
    target: str,
    template: str | None,
    keys: list[str],
    key_files: list[str],
    ca_bundle: str,
    public: bool,
    as_json: bool,
    strict: bool = False,
) -> int:
    """One line per check; exit 0 when no MUST fails (a failed SHOULD is a ``warn`` line),
    with ``strict`` only when every check passes."""
    from sshpin.provider_side.check import check_api, check_url, passed
    from sshpin.trust.http import require_https

    url, host = (None, target) if template else (target, None)
    signing = _signing_keys(keys, key_files)
    if template or url:  # before the token is read: nothing goes out over cleartext
        require_https(str(template or url), "provider check")
    if template is not None:
        if not host:
            raise UsageError("provider check --url TEMPLATE: give the HOST to check")
        checks = check_url(template, host, signing, ca_bundle)
    else:
        if not url:
            raise UsageError("provider check: give the API URL (or --url TEMPLATE HOST)")
        checks = check_api(url, _token(), signing, ca_bundle, public)
    ok = passed(checks, strict)
    if as_json:
        doc = {"ok": ok, "strict": strict, "checks": [c.as_dict() for c in checks]}
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        sys.stdout.write("".join(c.line(strict) + "\n" for c in checks))
    return EXIT_OK if ok else EXIT_PROVIDER


def _token() -> str:
    """The token: SSHPIN_TOKEN (never argv), else one line of standard input."""
    import os

    token = os.environ.get("SSHPIN_TOKEN", "")
    if not token and not sys.stdin.isatty():
        token = sys.stdin.readline().strip()
    if not token:
        raise UsageError(
            "provider check: no token", "set SSHPIN_TOKEN, or pipe it: pass show x | sshpin ..."
        )
    return token


def cmd_publish(
    keys_dir: str | None,
    inventory: str | None,
    account: str | None,
    api_url: str | None,
    out: str,
    key: str,
    days: int,
) -> int:
    from sshpin.provider_side import publish

    if (keys_dir is None) == (inventory is None):
        raise UsageError("publish: give one of --keys-dir DIR or --inventory FILE")
    if keys_dir is not None:
        if not account:
            raise UsageError("publish --keys-dir: give --account (the document names it)")
        inv = publish.from_keys_dir(keys_dir, account)
    else:
        assert inventory is not None
        inv = publish.from_inventory(inventory)
    for line in publish.publish(inv, out, key, api_url, days):
        sys.stdout.write(f"{out}/{line}\n")
    return EXIT_OK
