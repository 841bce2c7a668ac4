"""``sshpin setup`` and ``--undo`` on real ssh config files, proven with the real ``ssh -G``."""

from __future__ import annotations

import subprocess
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from sshpin.commands import snippet as sshconfig
from tests.conftest import HOOK_LINE, Pin

ROOT = Path(__file__).resolve().parents[2]
API = "https://capsul.example/api"

# A real user's config: comments, Host and Match blocks, an Include, CRLF line ends, a line
# that sets StrictHostKeyChecking for everything, and no newline at the very end.
USER_CONFIG = (
    "# my ssh config\r\n"
    "Include /nonexistent/sshpin-test/*.conf\r\n"
    "\r\n"
    "Host bastion\r\n"
    "    HostName 192.0.2.10\r\n"
    "    User alice\r\n"
    "\r\n"
    "Match host *.internal exec true\r\n"
    "    ForwardAgent no\r\n"
    "\r\n"
    "Host *\r\n"
    "    StrictHostKeyChecking ask\r\n"
    "    ServerAliveInterval 30"
)


def setup(pin: Pin, ssh_config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return pin.run("setup", "--ssh-config", str(ssh_config), *args)


def effective(ssh_config: Path, host: str) -> dict[str, str]:
    done = subprocess.run(
        ["ssh", "-G", "-F", str(ssh_config), host],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=True,
    )
    out: dict[str, str] = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition(" ")
        out.setdefault(key, value)
    return out


def hook_of(ssh_config: Path, host: str) -> str | None:
    return effective(ssh_config, host).get("knownhostscommand")


def new_user(pin: Pin) -> None:
    pin.config.unlink()  # setup --provider creates it


def test_setup_from_nothing_creates_private_files(pin: Pin) -> None:
    new_user(pin)
    ssh_config = pin.dir / "dot-ssh" / "config"
    done = setup(pin, ssh_config, "--provider", "capsul", "--api-url", API)
    assert done.returncode == 0, done.stderr
    assert "next: sshpin login capsul" in done.stdout
    assert (ssh_config.parent.stat().st_mode & 0o777) == 0o700
    assert (ssh_config.stat().st_mode & 0o777) == 0o600
    assert (pin.config.stat().st_mode & 0o777) == 0o600
    assert hook_of(ssh_config, "capsul-as9w8djads") == HOOK_LINE
    assert effective(ssh_config, "capsul-as9w8djads")["stricthostkeychecking"] == "true"
    assert hook_of(ssh_config, "example.org") is None
    assert effective(ssh_config, "example.org")["stricthostkeychecking"] == "ask"
    assert not list(ssh_config.parent.glob("*backup*"))  # nothing existed, nothing backed up


def test_setup_keeps_every_user_line_mode_and_line_ends(pin: Pin) -> None:
    new_user(pin)
    ssh_config = pin.dir / "dot-ssh-config"
    ssh_config.write_bytes(USER_CONFIG.encode())
    ssh_config.chmod(0o640)
    done = setup(
        pin,
        ssh_config,
        "--provider",
        "capsul",
        "--api-url",
        API,
        "--hosts",
        "capsul-*",
        "*.capsul.example",
        "203.0.113.0/24",
    )
    assert done.returncode == 0, done.stderr
    text = ssh_config.read_bytes().decode()
    assert text.endswith(USER_CONFIG)  # every user byte kept, after our two lines
    head = text[: -len(USER_CONFIG)]
    assert head.count("\r\n") == 2 and head.count("\n") == 2  # CRLF, like the file
    assert (ssh_config.stat().st_mode & 0o777) == 0o640
    assert Path(str(ssh_config) + ".sshpin-backup").read_bytes() == USER_CONFIG.encode()
    hook = HOOK_LINE
    for managed in ("capsul-as9w8djads", "web.capsul.example", "203.0.113.7"):
        seen = effective(ssh_config, managed)
        assert seen.get("knownhostscommand") == hook, managed
        # our StrictHostKeyChecking comes first, so it beats the user's "Host *" one
        assert seen["stricthostkeychecking"] == "true", managed
    for unmanaged in ("bastion", "example.org", "203.0.114.7"):
        seen = effective(ssh_config, unmanaged)
        assert "knownhostscommand" not in seen, unmanaged
        assert seen["stricthostkeychecking"] == "ask", unmanaged
    assert effective(ssh_config, "bastion")["user"] == "alice"  # the user's blocks still work

    # idempotent: a second run changes no byte and writes no backup
    before = {p.name: p.read_bytes() for p in pin.dir.iterdir() if p.is_file()}
    again = setup(pin, ssh_config, "--provider", "capsul", "--api-url", API, "--hosts",
                  "capsul-*", "*.capsul.example", "203.0.113.0/24")  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert again.stdout == "nothing to change: already set up\n"
    after = {p.name: p.read_bytes() for p in pin.dir.iterdir() if p.is_file()}
    assert after == before

    # undo puts back exactly what was there, and removes the config setup created
    undone = setup(pin, ssh_config, "--undo")
    assert undone.returncode == 0, undone.stderr
    assert ssh_config.read_bytes() == USER_CONFIG.encode()
    assert (ssh_config.stat().st_mode & 0o777) == 0o640
    assert not pin.config.exists()  # setup created it, and it held only setup's table
    assert not Path(str(pin.config) + ".sshpin-backup").exists()  # as before: no file at all
    assert not Path(sshconfig_snippet(pin)).exists()
    assert hook_of(ssh_config, "capsul-as9w8djads") is None
    assert setup(pin, ssh_config, "--undo").stdout == "nothing to undo\n"


def sshconfig_snippet(pin: Pin) -> str:
    return str(pin.config.parent / "ssh_config")


def test_setup_uses_existing_config_and_keeps_user_providers_on_undo(pin: Pin) -> None:
    ssh_config = pin.dir / "dot-ssh-config"
    original = pin.config.read_text()
    done = setup(pin, ssh_config)  # the fixture's config: hosts 127.0.0.1 and capsul-*
    assert done.returncode == 0, done.stderr
    assert hook_of(ssh_config, "127.0.0.1") is not None
    assert pin.config.read_text() == original  # no --provider: config untouched
    extra = setup(pin, ssh_config, "--provider", "second", "--api-url", API, "--hosts", "*.two")
    assert extra.returncode == 0, extra.stderr
    assert hook_of(ssh_config, "a.two") is not None
    assert pin.config.read_text().startswith(original)
    assert setup(pin, ssh_config, "--undo").returncode == 0
    assert pin.config.read_text() == original  # the user's own provider stays
    assert not ssh_config.exists()  # setup created it: undo removes it


def test_undo_keeps_a_provider_table_edited_since(pin: Pin) -> None:
    new_user(pin)
    ssh_config = pin.dir / "dot-ssh-config"
    assert setup(pin, ssh_config, "--provider", "capsul", "--api-url", API).returncode == 0
    pin.config.write_text(pin.config.read_text().replace('"capsul-*"', '"capsul-*", "*.mine"'))
    done = setup(pin, ssh_config, "--undo")
    assert done.returncode == 0
    assert "edited since; kept it" in done.stdout
    assert '"*.mine"' in pin.config.read_text()


def test_setup_writes_through_a_symlinked_ssh_config(pin: Pin) -> None:
    target = pin.dir / "dotfiles" / "ssh_config"
    target.parent.mkdir()
    target.write_text("Host old\n    User bob\n")
    link = pin.dir / "config-link"
    link.symlink_to(target)
    assert setup(pin, link).returncode == 0
    assert link.is_symlink()
    assert sshconfig.INCLUDE_MARK in target.read_text()
    assert hook_of(link, "capsul-abc") is not None


def test_an_include_already_at_the_top_is_left_alone(pin: Pin) -> None:
    ssh_config = pin.dir / "dot-ssh-config"
    text = f"Include {sshconfig_snippet(pin)}\nHost x\n    User y\n"
    ssh_config.write_text(text)
    assert setup(pin, ssh_config).returncode == 0
    assert ssh_config.read_text() == text
    # inside a Host block an Include applies to that block only: setup adds one at the top
    nested = f"Host x\n    Include {sshconfig_snippet(pin)}\n"
    ssh_config.write_text(nested)
    assert setup(pin, ssh_config).returncode == 0
    assert ssh_config.read_text().endswith(nested)
    assert hook_of(ssh_config, "capsul-abc") is not None


def test_setup_refuses_bad_input_and_changes_nothing(pin: Pin) -> None:
    ssh_config = pin.dir / "dot-ssh-config"
    ssh_config.write_text("Host a\n")
    config_before = pin.config.read_text()
    cases = [
        (["--provider", "new", "--api-url", "http://capsul.example/api"], "api_url"),
        (["--provider", "Bad Name", "--api-url", API], "name"),
        (["--provider", "new", "--api-url", API, "--hosts", "a b"], "hosts"),
        (["--provider", "capsul", "--api-url", "https://other.example/api"], "differently"),
        (["--provider", "new"], "--api-url"),
        (["--api-url", API], "--provider"),
    ]
    for args, word in cases:
        done = setup(pin, ssh_config, *args)
        assert done.returncode == 1, args
        assert done.stderr.startswith("sshpin: setup: ") and word in done.stderr, done.stderr
        assert done.stderr.count("\n") == 1
        assert pin.config.read_text() == config_before
        assert ssh_config.read_text() == "Host a\n"
    pin.config.unlink()
    done = setup(pin, ssh_config)
    assert done.returncode == 1 and "no provider in" in done.stderr


def test_snippet_patterns_mean_what_hosts_mean() -> None:
    patterns, skipped = sshconfig.ssh_patterns(
        ["capsul-*", "!capsul-old", "10.0.0.0/8", "10.1.0.0/20", "192.0.2.5/32", "2001:db8::/32"]
    )
    assert patterns == ["capsul-*", "!capsul-old", "10.*", "192.0.2.5"]
    assert skipped == ["10.1.0.0/20", "2001:db8::/32"]


def directives(text: str) -> list[tuple[str, str]]:
    out = []
    for line in text.splitlines():
        keyword, rest = sshconfig.directive(line)
        if keyword:
            out.append((keyword, rest))
    return out


def test_contrib_example_means_what_setup_writes(pin: Pin) -> None:
    example = (ROOT / "contrib" / "ssh_config.example").read_text()
    from sshpin.core.config import parse_document
    from sshpin.providers import validate_table

    providers = parse_document(
        {
            "provider": [
                {
                    "name": "capsul",
                    "type": "capsul",
                    "api_url": API,
                    "hosts": ["capsul-*", "*.capsul.example"],
                }
            ]
        },
        validate_table,
    )
    written = sshconfig.render_snippet(providers, "config.toml", ["/usr/local/bin/sshpin"])
    assert directives(example) == directives(written)


line_text = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"), max_size=30
)


@given(st.lists(line_text, max_size=8), st.sampled_from(["\n", "\r\n"]), st.booleans())
def test_add_then_remove_include_is_the_identity(lines: list[str], nl: str, end: bool) -> None:
    snippet = "/home/u/.config/sshpin/ssh_config"
    text = nl.join(lines) + (nl if end and lines else "")
    added = sshconfig.add_include(text, snippet)
    if added is None:  # the text already had our Include at its top
        assert sshconfig.include_state(text, snippet) == "top"
        return
    assert added.endswith(text)
    assert sshconfig.include_state(added, snippet) == "top"
    assert sshconfig.add_include(added, snippet) is None
    assert sshconfig.remove_include(added, snippet) == text


@given(line_text)
def test_directive_parser_matches_ssh_keyword_rules(line: str) -> None:
    keyword, rest = sshconfig.directive(line)
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        assert (keyword, rest) == ("", "")
    elif stripped.startswith("="):
        assert keyword == ""  # no keyword: ssh rejects such a line, setup never writes one
    else:
        assert keyword == keyword.lower() and keyword
        assert not any(c in keyword for c in " \t=")
        assert stripped.lower().startswith(keyword)


def test_setup_takes_a_ca_bundle_and_repeated_hosts_add_up(pin: Pin, tmp_path: Path) -> None:
    new_user(pin)
    ssh_config = tmp_path / "ssh_config"
    done = setup(pin, ssh_config, "--provider", "capsul", "--api-url", pin.api_url,
                 "--hosts", "capsul-*", "--hosts", "203.0.113.0/24", "capsul-*",
                 "--ca-bundle", pin.ca_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = pin.config.read_text()
    assert 'hosts = ["capsul-*", "203.0.113.0/24"]' in text
    assert f'ca_bundle = "{pin.ca_path}"' in text
    # the private provider's CA is in use: doctor reaches it with no hand edit
    checks = pin.run("doctor", "--json", "--ssh-config", str(ssh_config)).stdout
    assert '"check": "provider capsul",\n      "ok": true' in checks, checks
    missing = setup(pin, ssh_config, "--provider", "other", "--api-url", pin.api_url,
                    "--ca-bundle", str(tmp_path / "nope.pem"))  # fmt: skip
    assert missing.returncode == 1 and "--ca-bundle" in missing.stderr
    assert "nope.pem: no such file" in missing.stderr


def test_an_unknown_key_gets_a_did_you_mean(pin: Pin) -> None:
    pin.write_config(extra='ca_bundel = "x"\n')
    done = pin.hook("ORDER", "capsul-x")
    assert (
        "unknown key 'ca_bundel' for a provider of type 'capsul' (did you mean 'ca_bundle'?)"
        in (done.stderr)
    )
