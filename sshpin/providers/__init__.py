"""The providers registry: one module per ``type``, each behind ``interface.Provider``.

A new type is one module and one line in ``TYPES``. Nothing outside this package compares a
provider's type: everything else asks the registry for the provider object and calls it.
The user's pins (``pinned.PinProvider``) are a provider too, but not a config type.
"""

from __future__ import annotations

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (about 2 ms)
if TYPE_CHECKING:
    from typing import Any

    from sshpin.core.config import Config, ProviderConfig
    from sshpin.providers.interface import Provider

TYPES = {
    "capsul": ("sshpin.providers.capsul", "CapsulProvider"),
    "url": ("sshpin.providers.url", "UrlProvider"),
    "cert-authority": ("sshpin.providers.certauthority", "CertAuthorityProvider"),
}


def provider_class(kind: str) -> type[Provider]:
    """The class of a type, importing only that type's module."""
    import importlib

    module, name = TYPES[kind]
    cls: type[Provider] = getattr(importlib.import_module(module), name)
    return cls


def for_config(cfg: ProviderConfig, root: str | None = None) -> Provider:
    from sshpin.core.config import cache_dir

    return provider_class(cfg.type)(cfg, root or cache_dir())


def validate_table(table: dict[str, Any]) -> dict[str, Any]:
    """One ``[[provider]]`` table checked: the common keys, then its type's own."""
    from sshpin.core.schema import check_keys, validate_common

    out = validate_common(table, TYPES)
    cls = provider_class(out["type"])
    check_keys(table, cls.KEYS, out["type"])
    cls.validate(table, out)
    return out


def load_config(path: str | None = None, cache: str | None = None) -> Config | None:
    """The configuration (None when there is no config file), validated by this registry."""
    from sshpin.core.config import load

    return load(validate_table, path, cache)


def provider_for(cfg: Config | None, host: str, port: int = 22) -> ProviderConfig | None:
    """The first provider whose ``hosts`` cover ``host`` (lower case, no port) and whose
    ``ports`` cover ``port``: the one lookup.py asks (``Config.vouching``)."""
    return cfg.vouching(host, port) if cfg else None
