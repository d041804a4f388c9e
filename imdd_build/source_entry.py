"""Which `SourceEntry` a run ingests: the registry's (optionally overridden) or one built from options
for a generic adapter (`folder`, `coco`, ...), checked like the registry itself."""

from __future__ import annotations

import difflib
from typing import Optional

from pydantic import ValidationError

from .record import KEY_RE
from .registry import SourceEntry, get_source
from .sources import ADAPTERS, RootError
from .sourcekit.options import one_line
from .taxonomy import load_taxonomy


def source_entry(source: str, license: Optional[str] = None, domain: Optional[str] = None,
                 source_id: Optional[str] = None, redistribution: Optional[str] = None,
                 name: Optional[str] = None) -> SourceEntry:
    """The registry entry of a public source, or one built from options for a generic adapter."""
    if source in ADAPTERS and getattr(ADAPTERS[source], "generic", False):
        if not license:
            raise RootError(f"the generic adapter {source!r} needs --license (an SPDX id, or 'proprietary'): "
                            "there is no registry entry to take it from")
        sid = source_id or source
        if not KEY_RE.match(sid) or "/" in sid:
            raise RootError(f"--source-id {sid!r}: use lower-case letters, digits, '_' and '-'")
        check_domain(domain)
        try:
            return SourceEntry(id=sid, name=name or sid, adapter=source, license=license,
                               redistribution=redistribution or "unknown", domain=domain or "unknown",
                               domains=[domain] if domain else [],
                               annotation=list(getattr(ADAPTERS[source], "annotation_kinds", ())))
        except ValidationError as exc:
            raise RootError(one_line(exc)) from None
    try:
        entry = get_source(source)
    except KeyError as exc:
        raise RootError(str(exc).strip("'\"") + f"; {did_you_mean(source, known_ids())}"
                        f"generic adapters: {', '.join(generic_adapters())}") from None
    if entry.adapter_id not in ADAPTERS:
        raise RootError(f"source {source!r} is registered but has no adapter yet; available: {', '.join(ADAPTERS)}")
    updates = {k: v for k, v in {"license": license, "domain": domain, "redistribution": redistribution}.items() if v}
    if not updates:
        return entry
    check_domain(domain)
    try:  # validated like the registry itself (model_copy would not check the new values)
        return SourceEntry.model_validate({**entry.model_dump(), **updates})
    except ValidationError as exc:
        raise RootError(one_line(exc)) from None


def entry_from_spec(sid: str, spec: dict) -> SourceEntry:
    """The entry of one line of a roots file: a registered id, or `{adapter: ..., license: ...}`."""
    adapter = spec.get("adapter")
    if adapter:
        return source_entry(adapter, license=spec.get("license"), domain=spec.get("domain"), source_id=sid,
                            redistribution=spec.get("redistribution"), name=spec.get("name"))
    return source_entry(sid)


def check_domain(domain: Optional[str]) -> None:
    """A domain given on the command line or in a roots file must be one of the taxonomy's."""
    known = load_taxonomy().domains
    if domain and domain != "unknown" and domain not in known:
        close = difflib.get_close_matches(domain, list(known), n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise RootError(f"domain {domain!r} is not in the taxonomy; {hint}choose from "
                        f"{', '.join(sorted({*known, 'unknown'}))}")


def known_ids() -> list[str]:
    """Every id `ingest` and `sources --options` accept: registered sources and adapters."""
    from .registry import load_registry
    return sorted(set(load_registry()) | set(ADAPTERS))


def did_you_mean(name: str, choices) -> str:
    """"did you mean 'x'? " (up to three close ids), or "" when none is close."""
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.6)
    return f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""


def generic_adapters() -> list[str]:
    """The adapters that read the user's own data (they need --license/--domain)."""
    return sorted(a for a, cls in ADAPTERS.items() if getattr(cls, "generic", False))
