"""The versioned caption prompt (annotation_guidelines/caption_prompt.md), the facts it carries, the
chat messages of one request, and the structured answer schema with its strict parser."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, StrictStr, ValidationError

from ..record import Record
from ..taxonomy import GUIDELINES_DIR
from .checks import defect_terms, length_range, style_guide_path, taxonomy
from .template import template_caption
from ..errors import RunError


def prompt_path() -> Path:
    return Path(os.environ.get("IMDD_CAPTION_PROMPT", GUIDELINES_DIR / "caption_prompt.md"))


@dataclass(frozen=True)
class Prompt:
    version: str
    sha: str  # of the prompt file and the style guide: any edit changes the cache key
    sections: dict[str, str]
    style_guide: str

    def section(self, name: str, **values: Any) -> str:
        text = self.sections[name]
        for key, value in values.items():
            text = text.replace("{" + key + "}", str(value))
        return text


@lru_cache(maxsize=4)
def _load(path: Path, style: Path) -> Prompt:
    raw = path.read_text()
    m = re.search(r"(?m)^prompt-version:\s*(\S+)\s*$", raw)
    if not m:
        raise RunError(f"{path}: no 'prompt-version: N' line")
    sections: dict[str, str] = {}
    for block in re.split(r"(?m)^## ", raw)[1:]:
        name, _, body = block.partition("\n")
        sections[name.strip()] = body.strip()
    for needed in ("system", "user", "retry"):
        if needed not in sections:
            raise RunError(f"{path}: no '## {needed}' section")
    style_text = style.read_text() if style.is_file() else ""
    sha = hashlib.sha256((raw + "\0" + style_text).encode()).hexdigest()[:16]
    return Prompt(version=m.group(1), sha=sha, sections=sections, style_guide=style_text.strip())


def load_prompt() -> Prompt:
    return _load(prompt_path().resolve(), style_guide_path().resolve())


# -- the answer ----------------------------------------------------------------------------------
class CaptionDraft(BaseModel):
    """What the model answers: the caption and what it says it stated in it."""

    model_config = ConfigDict(extra="forbid")
    caption: StrictStr
    defect_terms: list[StrictStr]
    location: StrictStr | None = None
    severity: Literal["minor", "moderate", "severe"] | None = None


# Hand-written so that it is valid for OpenAI strict structured outputs (every property required,
# nullable by a union with null, no additional properties); vLLM, Ollama and llama.cpp accept it too.
DRAFT_SCHEMA = {
    "type": "object",
    "properties": {
        "caption": {"type": "string"},
        "defect_terms": {"type": "array", "items": {"type": "string"}},
        "location": {"type": ["string", "null"]},
        "severity": {"type": ["string", "null"], "enum": ["minor", "moderate", "severe", None]},
    },
    "required": ["caption", "defect_terms", "location", "severity"],
    "additionalProperties": False,
}
RESPONSE_FORMATS = ("json_schema", "json_object", "none")


def response_format(kind: str) -> dict | None:
    if kind == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": "caption_draft", "strict": True, "schema": DRAFT_SCHEMA}}
    if kind == "json_object":
        return {"type": "json_object"}
    return None


_FENCE = re.compile(r"^```(?:json)?\s*\n?(.*?)\n?```$", re.DOTALL)


def parse_draft(content: str | None) -> tuple[CaptionDraft | None, str | None]:
    """Strict parse of the answer: (draft, None) or (None, why it is not a valid answer)."""
    if content is None or not content.strip():
        return None, "the answer was empty; answer with the JSON object"
    text = content.strip()
    fence = _FENCE.match(text)  # servers without structured output often wrap JSON in a code fence
    if fence:
        text = fence.group(1).strip()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"the answer was not valid JSON ({exc.msg} at position {exc.pos}); answer with the JSON object only"
    try:
        return CaptionDraft.model_validate(data), None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'answer'}: {e['msg']}" for e in exc.errors()[:5])
        return None, f"the JSON did not match the schema ({problems})"


# -- the request ---------------------------------------------------------------------------------
def facts(record: Record) -> dict[str, Any]:
    """What the model is told about the record: labels, mask-derived attributes, the template caption."""
    tax = taxonomy()
    a = record.attributes
    types = []
    if record.label == "defective":
        for name, terms in defect_terms(record, tax):
            types.append({"name": name, "synonyms": sorted(t for t in terms if t != name)[:8]})
    out: dict[str, Any] = {
        "product": re.sub(r"[_\-]+", " ", record.product).strip(),
        "domain": tax.domain_name(record.domain),
        "label": record.label,
        "defect_types": types,
    }
    if record.label == "defective":
        out.update({
            "localized_by": a.basis,
            "location": a.location if a.basis else None,
            "cells_touched": list(a.locations) if a.basis else [],
            "defect_area_percent_of_object": round(a.area_fraction * 100, 2) if a.basis else None,
            "regions": a.regions if a.basis else None,
            "shape": a.shape if a.basis else None,
            "severity": a.severity if a.basis else None,
        })
    out["template_caption"] = template_caption(record)
    return out


def _data_url(data: bytes, fmt: str) -> str:
    mime = "image/jpeg" if fmt in ("jpeg", "jpg") else "image/png"
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def mask_overlay(image: bytes, mask: bytes) -> bytes:
    """The image with the mask's defect pixels tinted red (PNG)."""
    from PIL import Image

    img = Image.open(io.BytesIO(image)).convert("RGB")
    m = Image.open(io.BytesIO(mask)).convert("L").resize(img.size)
    red = Image.new("RGB", img.size, (255, 0, 0))
    blended = Image.blend(img, red, 0.45)
    img.paste(blended, mask=m)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def build_messages(record: Record, record_facts: dict, prompt: Prompt, images: list[tuple[bytes, str]] | None = None,
                   detail: str = "high") -> list[dict]:
    """System + user messages of the first attempt; `images` (bytes, format) with --vision."""
    lo, hi = length_range()
    system = prompt.section("system", style_guide=prompt.style_guide, min_words=lo, max_words=hi)
    user_text = prompt.section("user", facts=json.dumps(record_facts, indent=1, ensure_ascii=False))
    if images:
        parts: list[dict] = [{"type": "text", "text": user_text + "\n\n" + prompt.sections.get("vision", "")}]
        for data, fmt in images:
            parts.append({"type": "image_url", "image_url": {"url": _data_url(data, fmt), "detail": detail}})
        user: dict = {"role": "user", "content": parts}
    else:
        user = {"role": "user", "content": user_text}
    return [{"role": "system", "content": system}, user]


def retry_messages(messages: list[dict], previous: str | None, reasons: list[str], prompt: Prompt) -> list[dict]:
    """The second attempt: the first exchange plus the check reasons (derived only from stored data)."""
    listed = "\n".join(f"- {r}" for r in reasons)
    return [*messages, {"role": "assistant", "content": previous or ""},
            {"role": "user", "content": prompt.section("retry", reasons=listed)}]


def estimate_text_tokens(messages: list[dict]) -> int:
    """About 4 characters per token plus per-message overhead; images are counted by the caller."""
    n = 0
    for m in messages:
        content = m["content"]
        if isinstance(content, str):
            n += len(content) // 4 + 4
        else:
            n += sum(len(p.get("text", "")) // 4 for p in content) + 4
    return n + 3
