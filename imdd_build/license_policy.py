"""Which sources may be published, and on which terms (from `redistribution` in sources.yaml).

* `forbidden`: never pushed (the source's terms forbid redistribution).
* `unknown`: refused in a public push (nobody checked the terms); a `--private` push may carry it.
* `noncommercial` / `research_only`: need `--allow-noncommercial`; the card then says so at the top
  and the repository is gated (the user accepts the terms before downloading).
* `allowed`: published as is (gated only when the source's entry says `gated: true`).

Sources that are not in the registry (generic adapters: `folder`, `coco`, ...) count as `unknown`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import RunError
from .registry import SourceEntry

NONCOMMERCIAL = ("noncommercial", "research_only")


class PolicyError(RunError):
    """A refusal: one line naming the sources and the flag that would allow them."""


@dataclass
class Policy:
    sources: dict[str, SourceEntry]
    noncommercial: list[str] = field(default_factory=list)
    gated: bool = False
    gated_reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"sources": {s: e.redistribution for s, e in self.sources.items()},
                "noncommercial": self.noncommercial, "gated": self.gated, "gated_reasons": self.gated_reasons}


def unregistered_entry(source: str, license: str) -> SourceEntry:
    return SourceEntry(id=source, name=source, license=license or "unknown", redistribution="unknown")


def check_policy(entries: dict[str, SourceEntry], *, private: bool, allow_noncommercial: bool) -> Policy:
    """Apply the policy to the sources about to be published; raise PolicyError on a refusal."""
    def names(ids):
        return ", ".join(f"{s} ({entries[s].redistribution}, {entries[s].license})" for s in sorted(ids))

    forbidden = [s for s, e in entries.items() if e.redistribution == "forbidden"]
    unknown = [s for s, e in entries.items() if e.redistribution == "unknown"]
    if forbidden:
        raise PolicyError(f"refusing to publish {names(forbidden)}: their terms forbid redistribution; "
                          "leave them out with --sources")
    if unknown and not private:
        raise PolicyError(f"refusing a public push of {names(unknown)}: redistribution terms are unknown; "
                          "check them and set `redistribution` in sources.yaml, leave them out with --sources, "
                          "or push with --private")
    noncommercial = sorted(s for s, e in entries.items() if e.redistribution in NONCOMMERCIAL)
    if noncommercial and not allow_noncommercial:
        raise PolicyError(f"{names(noncommercial)} may only be shared for non-commercial/research use: pass "
                          "--allow-noncommercial (the card says so and the repo is gated) or leave them out "
                          "with --sources")
    policy = Policy(sources=dict(sorted(entries.items())), noncommercial=noncommercial)
    if noncommercial:
        policy.gated_reasons.append(f"non-commercial or research-only terms: {', '.join(noncommercial)}")
    gated = sorted(s for s, e in entries.items() if e.gated)
    if gated:
        policy.gated_reasons.append(f"the source requires gated access: {', '.join(gated)}")
    policy.gated = bool(policy.gated_reasons)
    return policy
