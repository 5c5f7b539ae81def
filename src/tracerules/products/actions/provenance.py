"""Provenance stamped into every artefact: the tool's version, the rule and the notice."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tracerules import __version__
from tracerules.products.actions.registry import ActionRequest


@dataclass(frozen=True, slots=True)
class Provenance:
    """Who made a file, from what. No wall-clock time: the same inputs give the same bytes."""

    tool: str
    rule: str
    event: str
    notice: int | None
    decision: int

    @classmethod
    def of(cls, request: ActionRequest) -> Provenance:
        notice = request.values.get("notice_id")
        return cls(
            f"tracerules {__version__}",
            request.trigger,
            request.event_id,
            notice if isinstance(notice, int) and not isinstance(notice, bool) else None,
            request.decision_id,
        )

    def line(self) -> str:
        """One line of text, for comments and visible stamps."""
        notice = "-" if self.notice is None else str(self.notice)
        return (
            f"{self.tool} | rule {self.rule} | event {self.event} | notice {notice}"
            f" | decision {self.decision}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "tool": self.tool,
            "rule": self.rule,
            "event": self.event,
            "notice": self.notice,
            "decision": self.decision,
        }
