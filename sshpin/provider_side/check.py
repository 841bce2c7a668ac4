"""``sshpin provider check``: does a live provider serve sshpin correctly? One line per check.

For a provider's engineers, and for users who wonder why sshpin refuses their provider. It
asks as sshpin asks (verified TLS, no redirects, the 4 MiB cap) and judges by the rules of
docs/provider-api.md, with sshpin's own parser and verifier: what passes here is what the
hook accepts. Nothing is cached or written.

Each check has one level, MUST or SHOULD, from the spec's key words (``LEVELS``): a failed
SHOULD is a warning, and fails the report only with ``--strict``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from sshpin.core.checks import Check
from sshpin.core.times import rfc3339
from sshpin.errors import SshpinError

MAX_PAGES = 1000
MUST, SHOULD = "MUST", "SHOULD"

# Each check's level, the one place that decides it, from docs/provider-api.md's key words
# (RFC 2119): a rule the spec states as MUST, or whose breach the client refuses (the token,
# TLS, the signature, a document or key it would not take), is MUST; any other is SHOULD.
LEVELS: dict[str, str] = {
    "auth": MUST,  # "MUST refuse a missing or wrong token with 401 or 403"
    "fetch": MUST,  # "MUST be HTTPS with a certificate valid for its name"; 200, no redirect
    "content-type": MUST,  # "A 200 MUST carry Content-Type: application/json"
    "size": MUST,  # "The body of one response MUST NOT exceed 4 MiB"
    "json": MUST,  # not JSON: the client refuses the document
    "schema": MUST,  # "the shape a client relies on" (ids, key entries, times)
    "document": MUST,  # the client refuses it whole
    "keys": MUST,  # key_type, content, sha256 MUST agree, else the capsul's keys are refused
    "generated_at": MUST,  # "MUST be when the document was made" (freeze, fast-forward)
    "binding": MUST,  # api "MUST equal the api_url"; expires "MUST be after ... at most 30 days"
    "signature": MUST,  # with signing_keys, "the response MUST carry Sshpin-Signature"
    "etag": SHOULD,  # "SHOULD carry an ETag"; If-None-Match "SHOULD be answered 304"
    "?host=": MUST,  # the hook's cold miss is this lookup; its "host" MUST be the one asked
    "?host= filter": SHOULD,  # "A server SHOULD honour host" (the client filters anyway)
    "paging": MUST,  # next_page_token, page_token, same account: MUST; a loop is refused
    "pages": SHOULD,  # longer than this check follows (the client stops at 10,000)
    "time": SHOULD,  # the spec's bound is the client's 10 s timeout, a failed fetch
}


def level(name: str) -> str:
    """A check's level; one the table does not name counts in full (MUST)."""
    return LEVELS.get(name, MUST)


def passed(checks: list[Check], strict: bool = False) -> bool:
    """The report passes when no MUST fails (with ``strict``, no check at all)."""
    return not any(c.counts(strict) for c in checks)


def _levelled(checks: list[Check]) -> list[Check]:
    for c in checks:
        c.level = level(c.name)
    return checks


class Client:
    """sshpin's HTTP session (trust/http.py), with the response kept whole for the checks."""

    def __init__(self, ca_bundle: str) -> None:
        from sshpin.trust import http

        self.http = http
        self.session = http.session(ca_bundle)

    def get(self, url: str, headers: dict[str, str]) -> Any:
        from sshpin.trust.document import MAX_BODY

        return self.http.get(self.session, url, headers, MAX_BODY, "provider", allow_404=True)


def check_api(
    api_url: str, token: str, signing_keys: list[str], ca_bundle: str = "", public: bool = False
) -> list[Check]:
    """Every check of a capsul host-key API v1 endpoint, each with its level."""
    return _levelled(_check_api(api_url, token, signing_keys, ca_bundle, public))


def _check_api(
    api_url: str, token: str, signing_keys: list[str], ca_bundle: str, public: bool
) -> list[Check]:
    from sshpin.trust.document import parse_capsul_api

    checks: list[Check] = []
    url = api_url.rstrip("/") + "/capsuls"
    client = Client(ca_bundle)
    auth = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    started = time.monotonic()

    def add(name: str, ok: bool, detail: str, fix: str = "") -> bool:
        checks.append(Check(name, ok, detail, fix))
        return ok

    try:  # 1. without the token
        r = client.get(url, {"Accept": "application/json"})
        add(
            "auth",
            r.status in (401, 403) or public,
            f"without a token: HTTP {r.status}",
            "answer 401 without a valid bearer token: the listing names the account's machines",
        )
    except SshpinError as e:
        add("auth", public or "401" in str(e) or "403" in str(e), f"without a token: {e}")
    try:  # 2. with it
        r = client.get(url, auth)
    except SshpinError as e:
        add("fetch", False, str(e), e.hint or "see the message")
        return checks
    if not add(
        "fetch", r.status == 200, f"GET {url}: HTTP {r.status}", "answer 200 with the document"
    ):
        return checks
    took = time.monotonic() - started
    content_type = r.headers.get("content-type", "").split(";")[0].strip().lower()
    add(
        "content-type",
        content_type == "application/json",
        content_type or "none",
        "send Content-Type: application/json",
    )
    add(
        "size",
        len(r.body) <= 4 << 20,
        f"{len(r.body)} bytes (limit 4 MiB per response)",
        "page the listing (next_page_token) and serve ?host=",
    )
    try:
        data = json.loads(r.body)
    except ValueError as e:
        add("json", False, f"not JSON: {e}", "serve the document as JSON")
        return checks
    checks.append(_schema(data))
    try:
        doc = parse_capsul_api(r.body, "provider", url)
    except SshpinError as e:
        add("document", False, str(e), "see docs/provider-api.md")
        return checks
    bad = [f"{c.id}: {c.problem}" for c in doc.capsuls if c.problem]
    skipped = [f"{c.id}: {s}" for c in doc.capsuls for s in c.skipped]
    add(
        "keys",
        not bad,
        f"{len(doc.capsuls)} capsul(s), "
        f"{sum(len(c.keys) for c in doc.capsuls)} key(s)"
        + (f"; refused: {bad[0]}" if bad else "")
        + (f"; skipped: {skipped[0]}" if skipped else ""),
        "publish each key's exact type, base64 and SHA256 fingerprint",
    )
    now = time.time()
    from sshpin.trust import verify

    # the client's own rules (trust/verify.py), on the document as served
    def generated_at() -> None:
        verify.check_window(doc.generated_at, 0.0, now, "document")

    def binding() -> None:
        verify.check_api(doc.api, verify.Asked("provider", api=api_url.rstrip("/")))
        verify.check_bound(doc.api, doc.expires, verify.Trust(), "document")
        verify.check_window(doc.generated_at, doc.expires, now, "document")

    rules: dict[str, Callable[[], None]] = {"generated_at": generated_at, "binding": binding}
    shown = {
        "generated_at": rfc3339(doc.generated_at),
        "binding": f"api {doc.api or '(none)'}, expires "
        + (rfc3339(doc.expires) if doc.expires else "(none)"),
    }
    fixes = {
        "generated_at": "set generated_at to when the document was made (not older than 30 "
        "days, not ahead)",
        "binding": "name the api and an expires at most 30 days after generated_at",
    }
    for name, rule in rules.items():
        try:
            rule()
            add(name, True, shown[name])
        except SshpinError as e:
            add(name, False, str(e), fixes[name])
    if signing_keys:
        from sshpin.trust.keychain import KeyState

        state = KeyState.start(list(signing_keys))
        header = r.headers.get("sshpin-signature") or None
        try:  # what the client fetches for it, as it fetches it: a failure is this check's
            detached, where = None, ""
            if not header:  # static hosting: the client verifies {api_url}/capsuls.sig
                sig = client.get(url + ".sig", {})
                detached, where = (sig.body, " (capsuls.sig)") if sig.status == 200 else (None, "")
            received = verify.Received(r.body, content_type, header, detached)
            chain = None
            if verify.wants_chain(received, verify.Trust(state)):
                answer = client.get(api_url.rstrip("/") + "/signing-keys", {})
                chain = answer.body if answer.status == 200 else None
            signer, _, _ = verify.check_signature(received, state, api_url.rstrip("/"),
                                                  "document", chain)  # fmt: skip
            add("signature", True, f"by {signer}{where}")
        except SshpinError as e:
            add(
                "signature",
                False,
                str(e),
                "sign the exact body: ssh-keygen -Y sign -n sshpin-hostkeys",
            )
    else:
        add("signature", True, "not checked (give --signing-key to check it)")
    etag = r.headers.get("etag")
    if etag:
        try:
            answer = f"HTTP {client.get(url, {**auth, 'If-None-Match': etag}).status}"
        except SshpinError as e:
            answer = str(e)
        add(
            "etag",
            answer == "HTTP 304",
            f"If-None-Match {etag}: {answer}",
            "answer 304 when the ETag matches",
        )
    else:
        add("etag", False, "no ETag", "send an ETag and honour If-None-Match with 304")
    checks.append(_host_lookup(client, url, auth, doc, data))
    checks.append(_paging(client, url, auth, data, doc.account))
    add(
        "time",
        took < 10.0,
        f"{took * 1000:.0f} ms for the first answer (sshpin gives up after 10 s)",
        "answer well within 10 s: ssh waits on it",
    )
    return checks


def _schema(data: object) -> Check:
    try:
        import jsonschema
    except ImportError:
        return Check("schema", True, "not checked (pip install jsonschema)")
    from pathlib import Path

    schema = (
        json.loads(
            (
                Path(__file__).resolve().parents[2] / "docs" / "capsul-hostkeys-v1.schema.json"
            ).read_text()
        )
        if (Path(__file__).resolve().parents[2] / "docs").is_dir()
        else None
    )
    if schema is None:
        return Check("schema", True, "not checked (the schema ships with the source)")
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(data), key=str)
    first = f"{'/'.join(map(str, errors[0].path))}: {errors[0].message}" if errors else ""
    return Check(
        "schema",
        not errors,
        first[:200] or "valid (capsul-hostkeys-v1)",
        "follow docs/capsul-hostkeys-v1.schema.json",
    )


def _host_lookup(
    client: Client, url: str, auth: dict[str, str], doc: Any, first: dict[str, Any]
) -> Check:
    """``?host=``: answered with the capsul (the hook's cold miss is this request), naming the
    host asked for if it filtered (MUST); filtered to that capsul (SHOULD)."""
    if not doc.capsuls:
        return Check("?host=", True, "not checked: the listing is empty")
    wanted = doc.capsuls[0].id
    listing = [c.get("id") for c in first.get("capsuls", []) if isinstance(c, dict)]
    from urllib.parse import quote

    r = client.get(f"{url}?host={quote(wanted)}", auth)
    try:
        data = json.loads(r.body) if r.status == 200 else {}
        ids = [c.get("id") for c in data.get("capsuls", [])]
    except (ValueError, AttributeError):
        ids = []
    if r.status != 200 or wanted not in ids:
        return Check(
            "?host=",
            False,
            f"?host={wanted}: HTTP {r.status}, ids {ids[:3]}",
            "answer ?host= with the document holding that capsul (or ignore it: the listing)",
        )
    said = data.get("host")
    if said is None and sorted(map(str, ids)) == sorted(map(str, listing)):
        return Check(
            "?host=", True, "ignored (allowed: the client filters; large accounts should serve it)"
        )
    if said != wanted or data.get("page_token") is not None:
        return Check(
            "?host=",
            False,
            f"?host={wanted}: the answer says host {said!r}, page_token {data.get('page_token')!r}",
            'name the host asked for in the answer ("host"), and no page_token: the client '
            "refuses an answer that could pass for another",
        )
    if ids != [wanted]:
        return Check(
            "?host= filter",
            False,
            f"?host={wanted}: {len(ids)} capsul(s)",
            "return only the capsuls whose id, name, ipv4 or ipv6 equals the host",
        )
    return Check("?host=", True, f"?host={wanted}: {len(ids)} capsul(s)")


def _paging(
    client: Client, url: str, auth: dict[str, str], first: dict[str, Any], account: str
) -> Check:
    if first.get("page_token") is not None or first.get("host") is not None:
        return Check(
            "paging",
            False,
            f"the first page says page_token {first.get('page_token')!r}, host "
            f"{first.get('host')!r}",
            "the first page of the listing carries neither: the client refuses it",
        )
    token = first.get("next_page_token")
    if not token:
        return Check("paging", True, "one page")
    from urllib.parse import quote

    seen = {token}
    pages = 1
    while token and pages < MAX_PAGES:
        r = client.get(f"{url}?page_token={quote(str(token))}", auth)
        pages += 1
        try:
            data = json.loads(r.body)
        except ValueError:
            return Check("paging", False, f"page {pages}: not JSON", "serve every page as JSON")
        if r.status != 200 or data.get("account") != account:
            return Check(
                "paging",
                False,
                f"page {pages}: HTTP {r.status}, account {data.get('account')!r}",
                "every page is a document of the account",
            )
        if data.get("page_token") != token:
            return Check(
                "paging",
                False,
                f"page {pages}: page_token {data.get('page_token')!r}, asked for {token!r}",
                "every page after the first names the token it answers (page_token), so a "
                "signed page cannot pass for another",
            )
        token = data.get("next_page_token")
        if token in seen:
            return Check(
                "paging",
                False,
                f"page {pages} repeats token {str(token)[:40]!r}",
                "never hand out a token twice: the listing loops",
            )
        if token:
            seen.add(token)
    if token:
        return Check(
            "pages", False, f"more than {MAX_PAGES} pages, not followed further", "use larger pages"
        )
    return Check("paging", True, f"{pages} pages to the end")


def check_url(
    template: str, host: str, signing_keys: list[str], ca_bundle: str = ""
) -> list[Check]:
    """The ``type = "url"`` layout for one host: the key file, its .sig, the binding header."""
    return _levelled(_check_url(template, host, signing_keys, ca_bundle))


def _check_url(template: str, host: str, signing_keys: list[str], ca_bundle: str) -> list[Check]:
    from urllib.parse import quote

    from sshpin.core.keys import SIGNING_KEY_TYPES, parse_key_lines, parse_line
    from sshpin.trust import sshsig

    checks: list[Check] = []
    client = Client(ca_bundle)
    url = template.replace("{host}", quote(host, safe=""))
    try:
        body = client.get(url, {})
        sig = client.get(url + ".sig", {})
    except SshpinError as e:
        return [Check("fetch", False, str(e), e.hint or "see the message")]
    checks.append(
        Check(
            "fetch",
            body.status == 200 and sig.status == 200,
            f"{url}: HTTP {body.status}; .sig: HTTP {sig.status}",
            "publish <host>.pub and <host>.pub.sig",
        )
    )
    if body.status != 200 or sig.status != 200:
        return checks
    text = body.body.decode("utf-8", "replace")
    first = text.split("\n", 1)[0]
    fields = (
        dict(f.partition("=")[::2] for f in first.split()[3:])
        if first.startswith("# sshpin-hostkeys v1 ")
        else {}
    )
    checks.append(
        Check(
            "binding",
            fields.get("host") == host,
            first[:120] or "(empty)",
            "start the file with '# sshpin-hostkeys v1 host=HOST generated_at=... expires=...'",
        )
    )
    notes: list[str] = []
    try:
        keys = parse_key_lines(text, True, notes)
        checks.append(
            Check(
                "keys",
                bool(keys),
                f"{len(keys)} key(s)" + (f"; skipped: {notes[0]}" if notes else ""),
                "list host keys",
            )
        )
    except SshpinError as e:
        checks.append(Check("keys", False, str(e), "one .pub line per key"))
    if signing_keys:
        allowed = [parse_line(line, SIGNING_KEY_TYPES) for line in signing_keys]
        try:
            signer = sshsig.verify(
                sshsig.unarmor(sig.body.decode("ascii", "replace")), body.body, allowed
            )
            checks.append(Check("signature", True, f"by {signer.sha256()}"))
        except SshpinError as e:
            checks.append(
                Check(
                    "signature",
                    False,
                    str(e),
                    "ssh-keygen -Y sign -n sshpin-hostkeys the exact file",
                )
            )
    return checks
