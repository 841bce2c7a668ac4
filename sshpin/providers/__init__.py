"""Provider implementations, one module per ``type``, behind ``interface.Provider``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sshpin.errors import ConfigError

if TYPE_CHECKING:
    from sshpin.config import ProviderConfig
    from sshpin.providers.interface import Provider


def for_config(cfg: ProviderConfig) -> Provider:
    """The provider object for a config table; imports only that provider's module."""
    if cfg.type == "capsul":
        from sshpin.providers.capsul import CapsulProvider

        return CapsulProvider(cfg)
    raise ConfigError(f"provider {cfg.name!r}: type {cfg.type!r} does not fetch documents")
