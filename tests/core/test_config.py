"""config.py: strict validation with messages naming file and key; durations (property)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sshpin.core import config, schema
from sshpin.errors import ConfigError
from sshpin.providers import load_config, validate_table

BASE = '[[provider]]\nname = "capsul"\ntype = "capsul"\napi_url = "https://c.example/api"\n'


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.toml"
    path.write_text(text)
    path.chmod(0o600)
    return str(path)


def test_valid_config_and_defaults(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, BASE + 'hosts = ["capsul-*"]\n'))
    assert cfg is not None
    p = cfg.providers[0]
    assert (p.ttl, p.stale_if_error, p.get("resolve_dns")) == (3600, 7 * 86400, True)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (BASE + 'hosts = ["x"]\nbogus = 1\n', "unknown key 'bogus'"),
        (BASE, "hosts"),
        (BASE.replace("https://", "http://") + 'hosts = ["x"]\n', "https://"),
        (BASE + 'hosts = ["x"]\nttl = "5 minutes"\n', "ttl"),
        (BASE + 'hosts = ["x"]\naliases = { web = "not-a-capsul" }\n', "aliases"),
        (BASE.replace('"capsul"\ntype', '"Bad Name"\ntype') + 'hosts = ["x"]\n', "name"),
        ('[[provider]]\nname = "ca"\ntype = "cert-authority"\nhosts = ["*"]\n'
         'ca_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFZsXAdjk6KeLjHq'
         '+lAt7Sw1QBZqMNoPvzlz/TY0H0qE"]\n',
         "every host"),
        ('top = 1\n', "unknown key 'top'"),
        (BASE + 'hosts = ["x"\n', "config.toml"),
    ],
)  # fmt: skip
def test_errors_name_the_key(tmp_path: Path, text: str, needle: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert needle in str(e.value)
    assert path in str(e.value)


def test_writable_config_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, BASE + 'hosts = ["x"]\n')
    os.chmod(path, 0o666)
    with pytest.raises(ConfigError, match="writable by group or others"):
        load_config(path)


def test_compiled_copy_used_and_refreshed(tmp_path: Path) -> None:
    path = _write(tmp_path, BASE + 'hosts = ["a"]\n')
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    first = load_config(path, str(cache))
    assert first is not None and first.providers[0].hosts == ["a"]
    assert (cache / "config.marshal").exists()
    (cache / "config.marshal").write_bytes(b"garbage")  # damaged: a miss, not a crash
    assert load_config(path, str(cache)).providers[0].hosts == ["a"]  # type: ignore[union-attr]
    _write(tmp_path, BASE + 'hosts = ["b"]\n')
    assert load_config(path, str(cache)).providers[0].hosts == ["b"]  # type: ignore[union-attr]


@given(st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from("smhdw")), min_size=1, max_size=4))
def test_durations(parts: list[tuple[int, str]]) -> None:
    text = "".join(f"{n}{u}" for n, u in parts)
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    assert schema.parse_duration(text, "ttl") == sum(n * units[u] for n, u in parts)


@given(st.text(max_size=20))
def test_duration_parser_never_crashes(text: str) -> None:
    try:
        assert schema.parse_duration(text, "ttl") >= 0
    except ValueError as e:
        assert "ttl" in str(e)


@given(
    st.dictionaries(
        st.sampled_from(
            ["name", "type", "hosts", "api_url", "ttl", "aliases", "x", "resolve_dns", "ca_keys"]
        ),
        st.one_of(
            st.text(max_size=20),
            st.booleans(),
            st.integers(),
            st.lists(st.text(max_size=10), max_size=3),
        ),
        max_size=6,
    )
)
def test_provider_validation_never_crashes(table: dict[str, object]) -> None:
    try:
        config.parse_document({"provider": [table]}, validate_table)
    except ConfigError:
        pass


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        # a key of the second table, after comments and blank lines: that key's line
        ("# mine\n\n" + BASE + 'hosts = ["a"]\n\n' + BASE.replace('"capsul"\ntype', '"two"\ntype')
         + 'hosts = ["b"]\nca_bundel = "x.pem"\n', 14, "(did you mean 'ca_bundle'?)"),
        # a value: the line of its key, quoted or not
        (BASE + '"ttl" = "5 minutes"\nhosts = ["x"]\n', 5, "ttl"),
        # a table with a missing key: its [[provider]] header
        ("\n" + BASE, 2, "hosts"),
        # the top level: a near miss of [[provider]]
        ('# mine\n[providers]\nname = "a"\n', 2,
         "unknown key 'providers' (did you mean [[provider]]?)"),
        ('colour = 1\n', 1, "unknown key 'colour' (expected [[provider]] tables)"),
        # a quoted header counts as a table too; the second table's key is named
        (BASE + 'hosts = ["a"]\n[["provider"]]\nname = "b"\ntype = "capsul"\n'
         'api_url = "https://c.example/api"\nhosts = ["b"]\nbogus = 1\n', 11, "'bogus'"),
        # a line separator inside a comment is text, not a new line (TOML counts "\n")
        ("# a\u2028b\n" + BASE + 'hosts = ["x"]\nbogus = 1\n', 7, "'bogus'"),
        # a top-level table after the providers: its header, not the provider's key
        (BASE + 'hosts = ["x"]\n[hosts]\nx = 1\n', 6, "unknown key 'hosts'"),
    ],
)  # fmt: skip
def test_errors_name_the_file_and_line(tmp_path: Path, text: str, line: int, needle: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value).startswith(f"{path}:{line}: ")
    assert needle in str(e.value)


def test_inline_tables_keep_the_message_without_a_line(tmp_path: Path) -> None:
    path = _write(tmp_path, 'provider = [{ name = "a", type = "capsul" }]\n')
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value).startswith(f"{path}: provider 'a': ")


@given(
    tables=st.integers(1, 4),
    data=st.data(),
    key=st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True),
    padding=st.lists(st.sampled_from(["", "# note", "  # indented note"]), max_size=3),
)
def test_any_misplaced_key_is_named_at_its_line(
    tmp_path_factory: pytest.TempPathFactory,
    tables: int,
    data: st.DataObject,
    key: str,
    padding: list[str],
) -> None:
    """Valid configs of 1-4 tables with comments and blank lines, one unknown key put at a
    random place of a random table: the error names that key at exactly its line."""
    bad = data.draw(st.integers(0, tables - 1), label="table")
    lines: list[str] = [*padding]
    expected = 0
    for t in range(tables):
        body = [f'name = "p{t}"', 'type = "capsul"', 'api_url = "https://c.example/api"',
                'hosts = ["x"]', *padding]  # fmt: skip
        if t == bad:
            at = data.draw(st.integers(0, len(body)), label="position")
            body.insert(at, f"x_{key} = 1")
            expected = len(lines) + 1 + at + 1
        lines += ["[[provider]]", *body]
    path = _write(tmp_path_factory.mktemp("cfg"), "\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value).startswith(f"{path}:{expected}: provider 'p{bad}': unknown key 'x_{key}'")


@given(st.lists(st.sampled_from(["", ".", "..", "a", ".config", "b..c", "...", "x."]), max_size=6),
       st.booleans())  # fmt: skip
def test_the_path_helper_is_abspath_without_importing_os(parts: list[str], slash: bool) -> None:
    path = "/" + "/".join(parts) + ("/" if slash else "")
    assert config._absolute(path) == os.path.abspath(path)
