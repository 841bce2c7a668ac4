"""One check's result, as ``sshpin doctor`` and ``sshpin provider check`` print it: one line
per check, ``ok``, ``FAIL`` or (a provider's unmet SHOULD) ``warn``, with the fix when it
failed; or JSON."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    level: str = ""  # "MUST" or "SHOULD" (provider check's table); doctor's checks have none

    def counts(self, strict: bool = False) -> bool:
        """Whether this check's failure fails the report: every failure but a SHOULD's, whose
        is a warning unless ``strict``."""
        return not self.ok and (strict or self.level != "SHOULD")

    def line(self, strict: bool = False) -> str:
        word = "ok" if self.ok else "FAIL" if self.counts(strict) else "warn"
        text = f"{word:<4}  {self.name}: {self.detail}"
        return text + (f" (fix: {self.fix})" if self.fix and not self.ok else "")

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "check": self.name,
            "ok": self.ok,
            "detail": self.detail,
            "fix": self.fix,
        }
        if self.level:
            out["level"] = self.level
        return out
