"""The trust core: whether a provider's answer is authentic, decided from bytes.

Every rule that decides it is here, once, as a pure function of what was received (the body,
its headers, the detached signature, the signing-key chain's bytes), what was asked (provider,
API, account, host, page token: ``Asked``), the configured trust (the signing keys as far as
their chain moved, ``allow_unbound``: ``Trust``), the rollback floors and ``now``. Nothing here
reads a file, the network or the clock: the fetching code (providers/capsul/client.py,
providers/url.py, provider_side/check.py) gathers the bytes, calls in, and persists what comes
out, as python-tuf's ``Updater`` sequences what its ``TrustedMetadataSet`` decides.

A refusal is a ``VerificationError`` subclass naming the attack it stops, with its one line;
tests/trust/test_verify.py asserts the type of each, from bytes, with no server.
"""

from __future__ import annotations

import binascii
import copy
from collections.abc import Mapping
from dataclasses import dataclass, field

from sshpin.core.times import rfc3339
from sshpin.errors import VerificationError
from sshpin.trust import sshsig
from sshpin.trust.document import Document, parse_capsul_api
from sshpin.trust.keychain import KeyState, follow

MAX_AGE = 30 * 86400  # nothing signed is accepted older, nor holds longer (docs/provider-api.md)
SKEW = 300.0  # clocks may differ this much
MAX_PAGES = 10_000  # a listing of more pages is refused (a server that never ends it)

Floors = Mapping[str, float]  # newest generated_at accepted, by ``floor_key``


class Rollback(VerificationError):
    """Older than an answer already accepted from the same signing key."""


class Freeze(VerificationError):
    """Past its own ``expires``, or more than 30 days old: an answer held back."""


class FastForward(VerificationError):
    """Generated in the future."""


class MixAndMatch(VerificationError):
    """For another account, API, host or page than the one asked."""


class Unbound(VerificationError):
    """Signed, but bound to no API and end of validity (a key file: to no host and time)."""


class EndlessData(VerificationError):
    """Claims validity for more than 30 days after it was generated, or a listing that loops."""


class BadSignature(VerificationError):
    """Not signed, or not by a signing key trusted now."""


class RevokedSigningKey(VerificationError):
    """Signed by a signing key the provider revoked."""


@dataclass(frozen=True)
class Asked:
    """What was asked, and of whom."""

    provider: str  # the provider's name, for messages
    api: str = ""  # its configured api_url, without a trailing slash
    source: str = ""  # the URL the answer is kept as coming from
    account: str = ""  # the account every answer must be for ("": none known yet)
    account_why: str = ""  # how it was chosen: "the config pins account", ...
    account_hint: str = ""
    page_token: str = ""  # the token asked with ("": the first page, or a lookup)
    host: str = ""  # the ?host= term asked ("": a listing's page)
    listing: bool = True  # a page of the listing: the account's rollback floor applies

    @property
    def what(self) -> str:
        return f"provider {self.provider!r}"


@dataclass(frozen=True)
class Trust:
    """The configured trust: ``state`` None when no ``signing_keys`` are set (TLS only)."""

    state: KeyState | None = None
    allow_unbound: bool = False
    context: str = ""  # the trust context the answer is kept under (core/config.py)


@dataclass(frozen=True)
class Received:
    """One answer as it came: its body and the headers that matter."""

    body: bytes
    content_type: str = "application/json"
    signature: str | None = None  # the Sshpin-Signature header
    detached: bytes | None = None  # ``{api_url}/capsuls.sig`` (armored), fetched when no header
    etag: str | None = None


@dataclass
class Verified:
    """A verified answer, and what verifying it moved: the signing keys reached by the
    chain (to persist when their version changed) and the lines to say."""

    doc: Document
    state: KeyState | None = None
    steps: list[str] = field(default_factory=list)  # one per chain step followed
    warnings: list[str] = field(default_factory=list)


def floor_key(kind: str, name: str, signer: str) -> str:
    """The rollback floor of an account, a capsul or a host, per signing key."""
    return f"{kind} {name} {signer}"


# -- the rules -------------------------------------------------------------------------


def signature_blob(received: Received, what: str) -> bytes:
    """The binary SSHSIG: base64 in ``Sshpin-Signature``, else the armored ``capsuls.sig``."""
    header = received.signature
    if header:
        try:
            return binascii.a2b_base64(header.strip().encode("ascii"), strict_mode=True)
        except (binascii.Error, UnicodeEncodeError):
            raise BadSignature(f"{what}: Sshpin-Signature is not base64") from None
    if received.detached is not None:
        try:
            return sshsig.unarmor(received.detached.decode("ascii"))
        except (UnicodeDecodeError, VerificationError):
            pass  # then: "not signed", the one clear refusal
    raise BadSignature(f"{what}: document is not signed (no Sshpin-Signature)")


def wants_chain(received: Received, trust: Trust) -> bool:
    """Is the answer signed by a key neither trusted nor revoked? Then the provider may have
    rotated: the caller fetches ``{api_url}/signing-keys`` and verifies again with its bytes."""
    if trust.state is None:
        return False
    try:
        claimed = sshsig.parse(signature_blob(received, "")).signer
    except VerificationError:
        return False
    state = trust.state
    return not state.is_revoked(claimed) and all(k.blob != claimed.blob for k in state.trusted())


def check_signature(
    received: Received, state: KeyState, api: str, what: str, chain: bytes | None = None
) -> tuple[str, KeyState, list[str]]:
    """(the signer's fingerprint, the signing keys reached, the chain's steps). ``chain``:
    the published chain's bytes, followed forward when the signer is not trusted yet."""
    blob = signature_blob(received, what)
    try:
        return sshsig.verify(blob, received.body, state.trusted()).sha256(), state, []
    except VerificationError as e:
        refused = BadSignature(f"{what}: document signature refused: {e}")
    try:
        claimed = sshsig.parse(blob).signer
    except VerificationError:
        raise refused from None
    steps: list[str] = []
    unknown = all(k.blob != claimed.blob for k in state.trusted())
    if chain is not None and unknown and not state.is_revoked(claimed):
        state, steps = follow(state, chain, api)
    if state.is_revoked(claimed):
        raise RevokedSigningKey(
            f"{what}: document signed by {claimed.sha256()}, a signing key the provider "
            "revoked: refused"
        )
    try:
        return sshsig.verify(blob, received.body, state.trusted()).sha256(), state, steps
    except VerificationError as e:
        raise BadSignature(f"{what}: document signature refused: {e}") from None


def check_account(account: str, asked: Asked) -> None:
    """Every answer is for the account expected (none expected yet: any)."""
    if not asked.account or account == asked.account:
        return
    raise MixAndMatch(
        f"{asked.what}: refused as mix-and-match: document is for account {account[:80]!r}, "
        f"{asked.account_why} {asked.account!r}",
        asked.account_hint,
    )


def check_api(api: str, asked: Asked) -> None:
    """A document that names its API names exactly the configured ``api_url``."""
    if api and api != asked.api:
        raise MixAndMatch(
            f"{asked.what}: refused as mix-and-match: document is for API {api[:80]!r}, "
            f"not the configured api_url {asked.api!r}"
        )


def check_answers(doc: Document, asked: Asked, signed: bool) -> None:
    """It answers what was asked: the page token asked with (a signed page names it, so a
    later page cannot pass for the first, nor one for another), and the ``?host=`` asked (so
    a lookup's answer cannot pass for the listing, nor for another host's answer)."""
    if doc.page_token != asked.page_token and (doc.page_token or signed):
        said = f"page_token {doc.page_token[:40]!a}" if doc.page_token else "no page_token"
        want = f"page_token {asked.page_token[:40]!a}" if asked.page_token else "the first page"
        raise MixAndMatch(
            f"{asked.what}: refused as mix-and-match: an answer with {said} to a request for "
            f"{want}",
            "a provider that pages names in each later page the token it answers "
            "(docs/provider-api.md, 'Large accounts')",
        )
    if doc.host and doc.host != asked.host:
        want = f"?host={asked.host[:80]}" if asked.host else "the listing"
        raise MixAndMatch(
            f"{asked.what}: refused as mix-and-match: an answer for host {doc.host[:80]!a} "
            f"to a request for {want}"
        )


def check_bound(api: str, expires: float, trust: Trust, what: str) -> list[str]:
    """A signed document names its API and its end of validity; else it is refused, unless
    the user opted into unbound documents (then: the warning to say)."""
    if api and expires:
        return []
    missing = " and ".join(f for f, v in (("api", api), ("expires", expires)) if not v)
    weakness = "it could be replayed from another API or account, or served forever"
    if not trust.allow_unbound:
        raise Unbound(
            f"{what}: refused as unbound: signed document has no {missing}; {weakness}",
            "ask the provider for bound documents, or set allow_unbound = true",
        )
    return [f"warning: accepting an unbound signed document (no {missing}; allow_unbound = "
            f"true): {weakness}"]  # fmt: skip


def check_window(
    generated: float, expires: float, now: float, what: str, noun: str = "signed document"
) -> None:
    """Within its time: not more than 30 days old, not past its ``expires`` (freeze), not
    valid for longer than 30 days from ``generated`` (endless data), not from the future
    (fast-forward). ``expires`` 0: it states none (an unbound document)."""
    if generated < now - MAX_AGE:
        raise Freeze(
            f"{what}: {noun} generated at {rfc3339(generated)} is more than 30 days old: "
            "refused as a freeze"
        )
    if expires and now >= expires:
        raise Freeze(f"{what}: refused as a freeze: {noun} expired at {rfc3339(expires)}")
    if expires > generated + MAX_AGE:
        raise EndlessData(
            f"{what}: refused as endless data: {noun} claims validity until {rfc3339(expires)}, "
            "more than 30 days after it was generated"
        )
    if generated > now + SKEW:
        raise FastForward(
            f"{what}: refused as fast-forward: {noun} generated at {rfc3339(generated)}, in the "
            "future"
        )


def check_rollback(generated: float, floor: float, what: str, noun: str = "document") -> None:
    """Never older than an answer already accepted."""
    if generated < floor:
        raise Rollback(
            f"{what}: {noun} generated at {rfc3339(generated)} is older than one already "
            f"accepted ({rfc3339(floor)}): refused as a rollback"
        )


def listing_floor(doc: Document, previous: Document | None, floors: Floors) -> float:
    """A listing's page: the account's newest from this signer, and the cached document."""
    floor = floors.get(floor_key("account", doc.account, doc.signer), 0.0)
    if previous is not None and previous.signed and previous.account == doc.account:
        floor = max(floor, previous.generated_at)
    return floor


def lookup_floor(
    doc: Document, capsul: str, previous: tuple[str, float] | None, floors: Floors
) -> float:
    """A ``?host=`` answer for ``capsul``: the account's newest and the capsul's from this
    signer, and the cached entry's (``previous``: its capsul and ``generated``) if signed."""
    floor = max(
        floors.get(floor_key("account", doc.account, doc.signer), 0.0),
        floors.get(floor_key("capsul", capsul, doc.signer), 0.0),
    )
    if previous is not None and previous[0] == capsul:
        floor = max(floor, previous[1])
    return floor


# -- capsul answers --------------------------------------------------------------------


def verify_document(
    received: Received,
    asked: Asked,
    trust: Trust,
    now: float,
    floors: Floors | None = None,
    previous: Document | None = None,
    chain: bytes | None = None,
) -> Verified:
    """One answer of the capsul API (a listing's page, or a ``?host=`` answer), verified:
    type, signature, shape, account, API, what it answers, binding, time and (a listing's
    page) the account's rollback floor. ``previous``: the cached document it replaces."""
    what = asked.what
    if received.content_type != "application/json":
        raise VerificationError(
            f"{what}: answer is {received.content_type or 'untyped'}, not application/json"
        )
    signer, state, steps = "", trust.state, list[str]()
    if trust.state is not None:
        signer, state, steps = check_signature(received, trust.state, asked.api, what, chain)
    try:
        doc = parse_capsul_api(received.body, asked.provider, asked.source)
    except VerificationError as e:
        raise VerificationError(f"{what}: {e}") from None
    signed = trust.state is not None
    check_account(doc.account, asked)
    check_api(doc.api, asked)
    check_answers(doc, asked, signed)
    warnings: list[str] = []
    doc.signer = signer
    if signed:
        warnings = check_bound(doc.api, doc.expires, trust, what)
        check_window(doc.generated_at, doc.expires, now, what)
        if asked.listing:
            check_rollback(doc.generated_at, listing_floor(doc, previous, floors or {}), what)
        doc.signed = True
    doc.trust = trust.context
    etag = received.etag
    doc.etag = etag if etag and etag.isascii() and etag.isprintable() else None
    doc.fetched_at = now
    return Verified(doc, state, steps, warnings)


def verify_not_modified(previous: Document | None, asked: Asked, now: float) -> Document:
    """A 304 vouches for nothing new: the cached document must still pass the rules a fresh
    one would (account, expiry, 30 days), or a frozen answer lives on. Returns it, fetched
    ``now``."""
    if previous is None:
        raise VerificationError(f"{asked.what}: 'not modified' answer to an unconditional GET")
    check_account(previous.account, asked)
    if previous.signed:
        check_window(previous.generated_at, previous.expires, now, asked.what)
    kept = copy.copy(previous)
    kept.fetched_at = now
    return kept


def check_same_listing(first: Document, page: Document, number: int, what: str) -> None:
    """Every page of one listing: same account, API and signing key as the first."""
    where = f"{what}: page {number} of the listing"
    if page.account != first.account:
        raise MixAndMatch(
            f"{where} is for account {page.account[:80]!r}, not {first.account!r}: refused "
            "as mix-and-match"
        )
    if page.api != first.api or page.signed != first.signed or page.signer != first.signer:
        raise MixAndMatch(f"{where} differs from the first in API or signature")


def next_page(page: Document, seen: set[str], pages: int, what: str) -> str:
    """The token of the page after ``page`` ("" at the end); a token seen before (a listing
    that loops) or a listing past MAX_PAGES is refused whole."""
    token = page.next_page
    if not token:
        return ""
    if token in seen:
        raise EndlessData(
            f"{what}: page token {token[:40]!a} repeats: the listing loops; refused whole"
        )
    if pages >= MAX_PAGES:
        raise EndlessData(f"{what}: listing of more than {MAX_PAGES} pages refused")
    return token


def merge_page(listing: Document, page: Document) -> None:
    """What a later page adds to the listing's header: the earliest ``generated_at`` and
    ``expires`` (the listing holds as long as its oldest page), and every page's revocations
    (account-wide: one dropped would un-revoke a key)."""
    listing.generated_at = min(listing.generated_at, page.generated_at)
    if page.expires:
        listing.expires = min(listing.expires or page.expires, page.expires)
    listing.revoked = listing.revoked + [k for k in page.revoked if k not in listing.revoked]
