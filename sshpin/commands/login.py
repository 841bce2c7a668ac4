"""``sshpin login NAME`` and ``sshpin logout NAME``: a provider's API token in the OS keyring."""

from __future__ import annotations

import sys

from sshpin.core import config
from sshpin.errors import EXIT_OK, AuthError, ConfigError, SshpinError, UsageError, say
from sshpin.providers import for_config, load_config
from sshpin.trust import credentials


def cmd_login(name: str) -> int:
    cfg = load_config()
    if cfg is None:
        raise ConfigError(f"login: no config at {config.config_path()}", "sshpin setup --provider")
    provider = for_config(cfg.provider(name))
    if not provider.takes_token:
        raise UsageError(f"login: provider {name!r} ({provider.cfg.type}) takes no token")
    try:
        token = credentials.read_token(name, str(provider.cfg.get("api_url")))
    except AuthError as e:
        raise UsageError(f"login {name}: {e}", e.hint) from None
    try:
        seen = provider.try_token(token)
    except SshpinError as e:
        raise type(e)(f"login {name}: {e}; the token was not stored", e.hint) from None
    backend = credentials.store_token(name, token)
    sys.stdout.write(f"stored the token for {name!r} in the keyring ({backend}); {seen}\n")
    other = credentials.overriding_source(name, str(provider.cfg.get("token_command") or ""))
    if other:
        say("login", f"note: {other} is used before the keyring while it is set")
    return EXIT_OK


def cmd_logout(name: str) -> int:
    cfg = load_config()
    if cfg is not None and not any(p.name == name for p in cfg.providers):
        known = ", ".join(p.name for p in cfg.providers) or "none"
        unknown = UsageError(
            f"logout: no provider named {name!r} in {cfg.path} (known: {known}), "
            "and no token stored for it",
            "sshpin logout NAME, with NAME as in the config",
        )
        try:  # a provider removed from the config may have left its token behind
            removed = credentials.delete_token(name)
        except SshpinError:
            raise unknown from None
        if not removed:
            raise unknown
        sys.stdout.write(f"removed the token for {name!r} (no longer in the config)\n")
        return EXIT_OK
    if credentials.delete_token(name):
        sys.stdout.write(f"removed the token for {name!r} from the keyring\n")
    else:
        sys.stdout.write(f"no token for {name!r} was stored in the keyring\n")
    return EXIT_OK
