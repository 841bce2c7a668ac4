"""The one small interface every fetching provider implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sshpin.config import ProviderConfig
    from sshpin.document import Document


class Provider(ABC):
    """Fetches and verifies a provider's document. Raises ProviderError (could not fetch) or
    VerificationError (fetched, but not to be trusted); never returns unverified data."""

    def __init__(self, cfg: ProviderConfig) -> None:
        self.cfg = cfg

    @property
    def name(self) -> str:
        return self.cfg.name

    @abstractmethod
    def source(self) -> str:
        """Where documents come from (a URL), for history records and messages."""

    @abstractmethod
    def fetch(self, previous: Document | None, now: float) -> Document:
        """A fresh verified document. With ``previous`` the fetch may revalidate (ETag) and
        return ``previous`` with a new ``fetched_at`` when nothing changed."""
