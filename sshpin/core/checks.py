"""One check's result, as ``sshpin doctor`` and ``sshpin provider check`` print it: one line
per check, ``ok`` or ``FAIL``, with the fix when it failed; or JSON."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{'ok' if self.ok else 'FAIL':<4}  {self.name}: {self.detail}"
        return text + (f" (fix: {self.fix})" if self.fix and not self.ok else "")

    def as_dict(self) -> dict[str, object]:
        return {"check": self.name, "ok": self.ok, "detail": self.detail, "fix": self.fix}
