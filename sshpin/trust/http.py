"""One requests Session: verified TLS, short timeouts, bounded retries, a size cap, no redirects.

Imported only when a fetch is needed (``import requests`` alone costs about 0.1 s here).

- ``trust_env`` is off: ``REQUESTS_CA_BUNDLE``, ``HTTPS_PROXY``, ``~/.netrc`` and friends cannot
  silently replace the trust anchor, add credentials or reroute the request (threat model in
  docs/architecture.md).
- the trust anchors are exactly the configured ``ca_bundle``, or, when none is set, the system
  store at OpenSSL's compiled-in paths (``openssl_cafile``/``openssl_capath``): not the paths
  ``SSL_CERT_FILE``/``SSL_CERT_DIR`` point at, and not certifi's bundle, which requests
  would otherwise add to every context. Verification is never turned off.
- redirects are refused: a document must come from the URL the user configured.
- only ``https://`` is ever asked (``require_https``, in ``get`` before anything else): a
  token or a host's keys never travel in cleartext, whatever URL a command was given.
- the whole exchange, retries included, must end within ``TOTAL_TIMEOUT``.
"""

from __future__ import annotations

import email.utils
import ssl
import time
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter

from sshpin import __version__
from sshpin.errors import AuthError, ProviderError, VerificationError

CONNECT_TIMEOUT = 3.0
TOTAL_TIMEOUT = 10.0
MAX_RETRIES = 2
MAX_RETRY_WAIT = 5.0
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
USER_AGENT = f"sshpin/{__version__}"


MAX_CA_BUNDLE = 4 << 20


class _TLSAdapter(HTTPAdapter):
    """An adapter whose SSL context holds exactly the anchors ``tls_context`` chose."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        # requests would set ca_certs to certifi's bundle here, and urllib3 would add it to
        # the context: verification stays on, with the context's anchors and nothing else
        conn.cert_reqs = "CERT_REQUIRED"
        conn.ca_certs = None
        conn.ca_cert_dir = None


def tls_context(ca_bundle: str = "") -> ssl.SSLContext:
    """Certificate and host name checks, TLS 1.2 or later, and the anchors of ``ca_bundle``
    alone, or the system store's fixed paths. Never ``set_default_verify_paths`` (it reads
    ``SSL_CERT_FILE`` and ``SSL_CERT_DIR``): no environment variable adds or replaces one."""
    from sshpin.errors import ConfigError

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, check_hostname
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_bundle:
        from sshpin.core.files import read_trusted

        try:
            raw, _ = read_trusted(ca_bundle, "ca_bundle", MAX_CA_BUNDLE)
        except FileNotFoundError:
            raise ConfigError(
                f"ca_bundle {ca_bundle}: no such file", "fix ca_bundle in the config"
            ) from None
        try:
            context.load_verify_locations(cadata=_pem_certificates(raw))
        except (ValueError, ssl.SSLError) as e:
            raise ConfigError(f"ca_bundle {ca_bundle}: cannot load: {e}") from e
        return context
    paths = ssl.get_default_verify_paths()
    import os

    cafile = paths.openssl_cafile if os.path.isfile(paths.openssl_cafile) else None
    capath = paths.openssl_capath if os.path.isdir(paths.openssl_capath) else None
    if cafile or capath:
        try:
            context.load_verify_locations(cafile=cafile, capath=capath)
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(f"system CA store {cafile or capath}: cannot load: {e}") from e
    return context


def _pem_certificates(raw: bytes) -> str:
    """The PEM certificate blocks of a bundle, without the comments around them (which may not
    be ASCII, as ``cadata`` requires)."""
    out: list[str] = []
    inside = False
    for line in raw.decode("latin-1").splitlines():
        line = line.strip()
        if line == "-----BEGIN CERTIFICATE-----":
            inside = True
        if inside:
            out.append(line)
        if line == "-----END CERTIFICATE-----":
            inside = False
    if not out:
        raise ValueError("no PEM certificate in it")
    return "\n".join(out) + "\n"


class _Session(requests.Session):
    ca_bundle = ""  # the provider's ca_bundle, for the hint of a TLS failure


def session(ca_bundle: str = "") -> requests.Session:
    s = _Session()
    s.ca_bundle = ca_bundle
    s.trust_env = False
    s.headers["User-Agent"] = USER_AGENT
    s.headers["Accept-Encoding"] = "gzip"  # decoded here, under the cap (``_read_capped``)
    s.max_redirects = 0
    s.mount("https://", _TLSAdapter(tls_context(ca_bundle)))
    s.mount("http://", _Refused())  # (get refuses first: this is the second lock)
    return s


class _Refused(HTTPAdapter):
    """Where a cleartext request would go: nowhere."""

    def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        raise requests.exceptions.InvalidURL("cleartext http:// is never used")


def require_https(url: str, what: str) -> None:
    """Refuse a URL that is not ``https://`` with a host, before any connection (and so
    before a token is sent): the one place this is decided for every request sshpin makes."""
    from urllib.parse import urlsplit

    from sshpin.errors import ConfigError

    try:
        parts = urlsplit(url)
        ok = parts.scheme.lower() == "https" and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok:
        raise ConfigError(
            f"{what}: refusing {url[:120]!a}: not an https:// URL, and a token or host key is "
            "never sent or taken over cleartext",
            "give the https:// URL",
        )


class TooLarge(VerificationError):
    """A body (decoded) past the cap."""


class Response:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


def _retry_after(value: str | None, now: float) -> float:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return 1.0
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 1.0
    return max(0.0, when.timestamp() - now)


class _Expired(BaseException):
    """Raised by the deadline alarm; a BaseException so no library handler swallows it."""


def _alarm(signum: int, frame: object) -> None:
    raise _Expired


def _tls_hint(s: requests.Session) -> str:
    """What to do about a certificate sshpin could not verify, from the CA source in use."""
    ca_bundle = getattr(s, "ca_bundle", "")
    if ca_bundle:
        return f"check that ca_bundle {ca_bundle} holds the CA of the provider's certificate"
    return (
        "for a provider with a private CA, set ca_bundle in the provider's table "
        "(sshpin setup --ca-bundle FILE); otherwise check the system's CA certificates"
    )


def get(
    s: requests.Session,
    url: str,
    headers: dict[str, str],
    max_body: int,
    what: str,
    allow_404: bool = False,
) -> Response:
    """``_get`` under a hard deadline. requests' read timeout applies to each socket read, so a
    server trickling a byte at a time could hold the caller for ever; in the main thread an
    interval timer (SIGALRM) ends the whole exchange at TOTAL_TIMEOUT (plus a second), in
    another thread a daemon thread abandoned at the same bound (core/bounded.py ``call``)."""
    import signal
    import threading

    require_https(url, what)
    from sshpin.core.bounded import doing, spent

    if spent():
        raise ProviderError(
            f"{what}: not asked: this ssh connection already waited for it as long as it may"
        )

    doing(f"waiting for {what} at {_host(url)} (name lookup, connection, TLS, answer)")
    if threading.current_thread() is not threading.main_thread():
        # no timer here (the hook's fetch thread): the exchange runs in a thread of its own,
        # abandoned at the same bound
        from sshpin.core.bounded import TimedOut, call, now_doing

        try:
            return call(lambda: _get(s, url, headers, max_body, what, allow_404),
                        TOTAL_TIMEOUT + 1.0, "sshpin-http")  # fmt: skip
        except TimedOut:
            raise _timed_out(
                f"{what}: timed out (no whole answer within {TOTAL_TIMEOUT:.0f} s, "
                f"while {now_doing()})"
            ) from None
    outer = signal.getitimer(signal.ITIMER_REAL)[0]  # the hook's own deadline, if one is set
    if outer and outer <= TOTAL_TIMEOUT + 1.0:
        return _get(s, url, headers, max_body, what, allow_404)  # that one ends it first
    started = time.monotonic()
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, TOTAL_TIMEOUT + 1.0)
    try:
        return _get(s, url, headers, max_body, what, allow_404)
    except _Expired:
        raise _timed_out(
            f"{what}: timed out (no whole answer within {TOTAL_TIMEOUT:.0f} s)"
        ) from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer:  # put the outer deadline back, less the time spent here
            signal.setitimer(signal.ITIMER_REAL, max(0.001, outer - (time.monotonic() - started)))


def _timed_out(message: str) -> ProviderError:
    """A wait on the provider that ran out: noted for the ssh connection (core/connection.py),
    whose later hook calls then ask nothing and serve what the cache's rules allow."""
    from sshpin.core import connection

    connection.note(connection.TIMED_OUT)
    return ProviderError(message)


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    return str(urlsplit(url).hostname)


def _get(
    s: requests.Session,
    url: str,
    headers: dict[str, str],
    max_body: int,
    what: str,
    allow_404: bool = False,
) -> Response:
    """GET with the rules above; returns 200 and 304 answers (and 404 when ``allow_404``),
    raises for everything else."""
    deadline = time.monotonic() + TOTAL_TIMEOUT
    attempt = 0
    while True:
        attempt += 1
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _timed_out(f"{what}: timed out (no answer within {TOTAL_TIMEOUT:.0f} s)")
        try:
            r = s.get(
                url,
                headers=headers,
                timeout=(min(CONNECT_TIMEOUT, remaining), remaining),
                allow_redirects=False,
                stream=True,
                verify=True,
            )
        except requests.exceptions.SSLError as e:
            raise ProviderError(
                f"{what}: TLS verification failed: {_reason(e)}", _tls_hint(s)
            ) from e
        except requests.exceptions.ConnectTimeout as e:
            raise _timed_out(f"{what}: connection timed out") from e
        except requests.exceptions.ConnectionError as e:
            raise ProviderError(f"{what}: cannot connect: {_reason(e)}") from e
        except requests.exceptions.Timeout as e:
            raise _timed_out(f"{what}: timed out") from e
        except requests.exceptions.RequestException as e:
            raise ProviderError(f"{what}: request failed: {_reason(e)}") from e
        try:
            status = r.status_code
            if status in RETRY_STATUSES and attempt <= MAX_RETRIES:
                wait = _retry_after(r.headers.get("Retry-After"), time.time())
                if wait <= MAX_RETRY_WAIT and time.monotonic() + wait < deadline - 1.0:
                    time.sleep(wait)
                    continue
            if status in (401, 403):
                raise AuthError(f"{what}: token rejected (HTTP {status})")
            if 300 <= status < 400 and status != 304:
                raise ProviderError(f"{what}: redirect (HTTP {status}) refused")
            if status == 429 or status >= 500:
                raise ProviderError(
                    f"{what}: provider busy or failing (HTTP {status}), retry later"
                )
            if status == 404 and allow_404:
                return Response(404, {}, b"")
            if status not in (200, 304):
                raise ProviderError(f"{what}: unexpected HTTP {status}")
            from sshpin.core.bounded import doing

            doing(f"reading the answer of {what} at {_host(url)}")
            body = _read_capped(r, max_body, deadline, what) if status == 200 else b""
            return Response(status, {k.lower(): v for k, v in r.headers.items()}, body)
        finally:
            r.close()


def _read_capped(r: requests.Response, limit: int, deadline: float, what: str) -> bytes:
    """The body, decoded, never more than ``limit`` bytes of it held: a gzip body is inflated
    here chunk by chunk with a bound on the output, so a small bomb is refused as it grows."""
    import zlib

    encoding = r.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip", ""):
        raise VerificationError(f"{what}: answer in unsupported Content-Encoding {encoding[:20]!a}")
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding == "gzip" else None
    declared = r.headers.get("Content-Length")
    if inflate is None and declared and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"{what}: body of {declared} bytes exceeds the limit ({limit})")
    chunks: list[bytes] = []
    size = 0

    def take(data: bytes) -> None:
        nonlocal size
        size += len(data)
        if size > limit:
            raise TooLarge(f"{what}: body exceeds the limit ({limit} bytes, decoded)")
        chunks.append(data)

    try:
        for chunk in r.raw.stream(65536, decode_content=False):
            if inflate is None:
                take(chunk)
            else:
                pending = chunk
                while pending:
                    take(inflate.decompress(pending, limit - size + 1))
                    pending = inflate.unconsumed_tail
            if time.monotonic() > deadline:
                raise _timed_out(
                    f"{what}: timed out (body not received within {TOTAL_TIMEOUT:.0f} s)"
                )
        if inflate is not None:
            take(inflate.flush())
            if not inflate.eof:
                raise VerificationError(f"{what}: gzip body is truncated")
    except zlib.error as e:
        raise VerificationError(f"{what}: gzip body is damaged: {e}") from None
    except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as e:
        raise ProviderError(f"{what}: body not received: {_reason(e)}") from e
    return b"".join(chunks)


def _reason(e: Exception) -> str:
    """The innermost cause, on one line, without the URL noise urllib3 wraps it in."""
    inner: BaseException = e
    while True:
        nxt = inner.__cause__ or inner.__context__
        if nxt is None or nxt is inner:
            break
        inner = nxt
    text = str(inner) or type(inner).__name__
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        tail = text.split("certificate verify failed:", 1)[-1].strip(" )'\"")
        return "certificate verify failed: " + (tail.split("(")[0].strip() or "untrusted")
    if "Connection refused" in text:
        return "connection refused"
    if "Name or service not known" in text or "NameResolutionError" in text:
        return "host name lookup failed"
    return " ".join(text.split())[:160]
