"""One test per security rule that a planted bug once broke with the whole suite still green.

Each test names the rule and the bug it kills; mutation/security_mutants.toml plants each bug
again and checks that the test named there fails (``python3 mutation/run_mutants.py``).
Everything is end to end through the installed hook against the trustme HTTPS provider.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from pathlib import Path

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from sshpin.commands.demo import keygen
from sshpin.errors import UsageError
from sshpin.hook import parse_args
from sshpin.trust import sshsig
from tests.conftest import TLS, Keys, Pin
from tests.refserver import ReferenceServer

# -- the host argument: a trailing newline or blank never passes -----------------------------

LABEL = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)
NAMES = st.lists(LABEL, min_size=1, max_size=4).map(".".join)
IPV4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
IPV6 = st.ip_addresses(v=6).map(str)
CAPSUL_IDS = LABEL.map(lambda s: "capsul-" + s)
HOSTS = st.one_of(NAMES, IPV4, IPV6, CAPSUL_IDS)
TOKENS = st.one_of(
    HOSTS.filter(lambda h: ":" not in h),  # ssh brackets an IPv6 literal only with a port
    IPV6,
    st.tuples(HOSTS, st.integers(1, 65535)).map(lambda t: f"[{t[0]}]:{t[1]}"),
)
JUNK = st.sampled_from(
    ["\n", " ", "\t", "\r", "\x00", "\n@cert-authority * ssh-ed25519 AAAA", ",evil", "#"]
)


@given(TOKENS, JUNK, st.booleans())
def test_every_valid_host_is_accepted_and_no_smuggled_byte_is(
    token: str, junk: str, front: bool
) -> None:
    query = parse_args(["HOSTNAME", token, "NONE", "NONE"])  # the accepting branch, always
    event("accepted")
    assert query.token == token and query.host == query.host.lower()
    with pytest.raises(UsageError):
        parse_args(["HOSTNAME", junk + token if front else token + junk, "NONE", "NONE"])


# -- helpers ---------------------------------------------------------------------------------


def key(keys: Keys, which: str) -> list[str]:
    return keys.pub(which).split()[:2]


def printed_keys(stdout: str) -> list[list[str]]:
    return [line.split()[1:3] for line in stdout.splitlines() if not line.startswith("@")]


# -- refresh on mismatch: at most once per 30 s per host --------------------------------------


def test_mismatch_refetch_waits_the_whole_30_seconds(
    pin: Pin, provider: ReferenceServer, keys: Keys
) -> None:
    provider.api.add("capsul-m", [keys.pub(keys.host)])
    assert pin.hook("HOSTNAME", "capsul-m", *key(keys, keys.host)).stdout
    assert provider.api.count() == 1
    forged = ["HOSTNAME", "capsul-m", *key(keys, keys.forged)]
    pin.hook(*forged)
    assert provider.api.count() == 2  # the first unknown key refetches at once
    pin.age_mismatch_marks(5)
    pin.hook(*forged)
    assert provider.api.count() == 2  # 5 s later: not again
    pin.age_mismatch_marks(26)
    pin.hook(*forged)
    assert provider.api.count() == 3  # 31 s later: again


# -- the HTTP session ignores the environment --------------------------------------------------


def test_proxy_and_ca_variables_do_not_reach_the_provider_session(
    pin: Pin, provider: ReferenceServer, keys: Keys, tmp_path: Path
) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    (tmp_path / ".netrc").write_text("machine 127.0.0.1 login evil password evil\n")
    pin.env.update(
        HTTPS_PROXY=f"http://127.0.0.1:{closed}",
        https_proxy=f"http://127.0.0.1:{closed}",
        ALL_PROXY=f"http://127.0.0.1:{closed}",
        REQUESTS_CA_BUNDLE="/nonexistent/ca.pem",
        CURL_CA_BUNDLE="/nonexistent/ca.pem",
        NETRC=str(tmp_path / ".netrc"),
    )
    provider.api.add("capsul-e", [keys.pub(keys.host)])
    done = pin.hook("HOSTNAME", "capsul-e", *key(keys, keys.host))
    assert printed_keys(done.stdout) == [key(keys, keys.host)], done.stderr
    assert done.stderr == ""


# -- a cached entry older than the provider's newest document is not served -------------------


def test_an_entry_is_not_served_once_a_newer_document_changed_its_keys(
    pin: Pin, provider: ReferenceServer, keys: Keys
) -> None:
    provider.api.honour_host = False  # the listing (a cold miss asks ?host=): a document
    provider.api.add("capsul-a", [keys.pub(keys.host)])
    assert printed_keys(pin.hook("ORDER", "capsul-a").stdout) == [key(keys, keys.host)]
    provider.api.set_keys("capsul-a", [keys.pub(keys.rebuilt)])  # capsul-a rebuilt
    provider.api.add("capsul-new", [keys.pub(keys.host)])
    assert pin.hook("ORDER", "capsul-new").stdout  # a refetch writes a newer document
    assert provider.api.count() == 2
    done = pin.hook("ORDER", "capsul-a")
    assert printed_keys(done.stdout) == [key(keys, keys.rebuilt)], done.stderr


# -- signed documents: no fast-forward --------------------------------------------------------


def test_a_signed_document_from_the_future_is_refused(
    pin: Pin, provider: ReferenceServer, keys: Keys, tmp_path: Path
) -> None:
    pub = keygen(str(tmp_path / "ops"), comment="ops")
    provider.api.signing_key = sshsig.load_private_key(str(tmp_path / "ops"))
    pin.write_config(extra=f'signing_keys = ["{pub}"]\n')
    provider.api.add("capsul-f", [keys.pub(keys.host)])
    provider.api.generated_at = time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 86400)
    )
    done = pin.hook("HOSTNAME", "capsul-f", *key(keys, keys.host))
    assert done.stdout == ""
    assert "in the future" in done.stderr and done.stderr.count("\n") == 1, done.stderr


# -- the body cap holds for a streamed body with no Content-Length ----------------------------


def test_a_streamed_body_past_4_mib_is_refused(pin: Pin, tls: TLS, keys: Keys) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    sent = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with tls.server_context.wrap_socket(conn, server_side=True) as s:
                s.recv(65536)
                s.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                )
                chunk = b" " * 65536
                for _ in range(80):  # 5 MiB in 64 KiB chunks, no length declared
                    s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                s.sendall(b"0\r\n\r\n")
        except (OSError, ssl.SSLError):
            pass  # the client hung up once past the cap: what the rule wants
        finally:
            sent.set()

    threading.Thread(target=serve, daemon=True).start()
    url = f"https://127.0.0.1:{listener.getsockname()[1]}/api"
    pin.config.write_text(pin.config.read_text().replace(pin.api_url, url))
    done = pin.hook("HOSTNAME", "capsul-s", *key(keys, keys.host))
    listener.close()
    assert done.stdout == ""
    assert "exceeds the limit" in done.stderr and done.stderr.count("\n") == 1, done.stderr


# -- ProxyCommand mode: the managed known_hosts drops what the provider dropped ---------------


def test_the_managed_known_hosts_drops_a_removed_key(
    pin: Pin, provider: ReferenceServer, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("SSHPIN_CONFIG", "SSHPIN_CACHE_DIR", "SSHPIN_TOKEN_CAPSUL"):
        monkeypatch.setenv(name, pin.env[name])
    from sshpin.commands.proxy import managed_known_hosts, record, target

    provider.api.add("capsul-p", [keys.pub(keys.host), keys.pub(keys.rebuilt)], ipv4="127.0.0.1")
    provider.api.add("capsul-q", [keys.pub(keys.forged)], ipv4="127.0.0.2")
    for host in ("capsul-p", "capsul-q"):
        record(target(host, 22)[1])
    provider.api.set_keys("capsul-p", [keys.pub(keys.rebuilt)])  # the provider drops one key
    pin.run("cache", "refresh", "--all")
    record(target("capsul-p", 22)[1])
    lines = Path(managed_known_hosts()).read_text().splitlines()
    assert sorted(line.split()[1:3] for line in lines if line.startswith("capsul-p ")) == [
        key(keys, keys.rebuilt)
    ]
    assert [line.split()[1:3] for line in lines if line.startswith("capsul-q ")] == [
        key(keys, keys.forged)
    ]


# -- two capsuls claiming one address: refused, never guessed ---------------------------------


def test_an_address_two_capsuls_claim_is_refused(
    pin: Pin, provider: ReferenceServer, keys: Keys
) -> None:
    provider.api.add("capsul-one", [keys.pub(keys.host)], ipv4="127.0.0.1")
    provider.api.add("capsul-two", [keys.pub(keys.forged)], ipv4="127.0.0.1")
    for args in (["ORDER", "127.0.0.1"], ["HOSTNAME", "127.0.0.1", *key(keys, keys.forged)]):
        done = pin.hook(*args)
        assert done.returncode == 0 and done.stdout == "", done.stdout
        assert "more than one capsul" in done.stderr and done.stderr.count("\n") == 1


# -- a config edit that changes which machine a name is, or what vouches for it ---------------


def test_an_alias_pointed_at_another_capsul_is_not_answered_from_the_old_one(
    pin: Pin, provider: ReferenceServer, keys: Keys
) -> None:
    provider.api.add("capsul-a", [keys.pub(keys.host)])
    provider.api.add("capsul-b", [keys.pub(keys.rebuilt)])
    web = '["capsul-*", "web.example.org"]'
    pin.write_config(hosts=web, extra='aliases = { "web.example.org" = "capsul-a" }\n')
    old = key(keys, keys.host)
    assert printed_keys(pin.hook("HOSTNAME", "web.example.org", *old).stdout) == [old]
    pin.write_config(hosts=web, extra='aliases = { "web.example.org" = "capsul-b" }\n')
    done = pin.hook("HOSTNAME", "web.example.org", *old)  # capsul-a's key, offered again
    assert printed_keys(done.stdout) == [key(keys, keys.rebuilt)], done.stderr
    assert provider.api.count() == 2  # the edit made the cached answer a miss: fetched again


def test_resolve_dns_turned_off_is_not_answered_from_a_dns_resolution(
    pin: Pin, provider: ReferenceServer, keys: Keys
) -> None:
    provider.api.add("capsul-a", [keys.pub(keys.host)], ipv4="127.0.0.1")
    pin.write_config(hosts='["capsul-*", "localhost"]')
    done = pin.hook("HOSTNAME", "localhost", *key(keys, keys.host))
    assert printed_keys(done.stdout) == [key(keys, keys.host)], done.stderr
    assert "dns" in pin.run("cache", "show", "localhost").stdout.lower()
    pin.write_config(hosts='["capsul-*", "localhost"]', extra="resolve_dns = false\n")
    done = pin.hook("HOSTNAME", "localhost", *key(keys, keys.host))
    assert done.stdout == "" and "not a capsul" in done.stderr, done.stderr


def test_a_provider_redefined_as_a_cert_authority_serves_no_key_cached_before(
    pin: Pin, provider: ReferenceServer, keys: Keys, tmp_path: Path
) -> None:
    provider.api.add("capsul-a", [keys.pub(keys.host)])
    plain = key(keys, keys.host)
    assert printed_keys(pin.hook("HOSTNAME", "capsul-a", *plain).stdout) == [plain]
    ca = " ".join(keygen(str(tmp_path / "ca"), comment="ca").split()[:2])
    pin.config.write_text(
        '[[provider]]\nname = "capsul"\ntype = "cert-authority"\nhosts = ["capsul-*"]\n'
        f'ca_keys = ["{ca}"]\nports = {pin.ports}\n'
    )
    done = pin.hook("HOSTNAME", "capsul-a", *plain)
    assert done.stdout == f"@cert-authority capsul-a {ca}\n", done.stdout + done.stderr
