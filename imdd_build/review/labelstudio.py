"""Label Studio interop: export queue items as tasks, import the annotated export back as decisions.

Export: a JSON list of tasks. `data.image` is the image (by default Label Studio's local-files URL
of the workspace store: run Label Studio with LOCAL_FILES_SERVING_ENABLED=true and
LOCAL_FILES_DOCUMENT_ROOT=<workspace>; or `--image-prefix` to an HTTP server of the store), `data.key`
the catalog key, `data.draft` the draft; `predictions[0]` holds the draft as an editable TextArea
value with the drafting model as `model_version`. The labeling config is written beside the tasks
(`<out>.label_config.xml`).

Import: Label Studio's JSON export of those tasks. Each annotation becomes a decision of reviewer
`label-studio:<email or id>` (`completed_by`), with its final text, `lead_time` as the time spent and
its `created_at`; a `decision` choice of `reject` (with a `reason` choice) rejects, a changed text is
an edit, the unchanged text an accept, and a cancelled (skipped) annotation is counted and ignored.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

from .auth import external_reviewer
from .common import REASONS, Conflict, Invalid, NotFound, valid_key
from .queue import ReviewQueue
from ..errors import RunError

LABEL_CONFIG = """<View>
  <Image name="image" value="$image" zoom="true" zoomControl="true"/>
  <Header value="$meta"/>
  <TextArea name="caption" toName="image" editable="true" maxSubmissions="1" rows="5"
            placeholder="Caption (edit the draft)"/>
  <Choices name="decision" toName="image" choice="single" showInline="true">
    <Choice value="accept"/>
    <Choice value="reject"/>
  </Choices>
  <Choices name="reason" toName="image" choice="single" showInline="true" visibleWhen="choice-selected"
           whenTagName="decision" whenChoiceValue="reject">
""" + "".join(f'    <Choice value="{r}"/>\n' for r in REASONS) + """  </Choices>
</View>
"""


def model_version(meta: dict, source: Optional[str]) -> str:
    if meta.get("model"):
        pv = meta.get("prompt_version")
        return f"{meta['model']}" + (f"@prompt{pv}" if pv else "")
    name = meta.get("generator") or source or "unknown"
    return f"{name}-v{meta['version']}" if meta.get("version") else name


def export_tasks(q: ReviewQueue, out: Path, image_prefix: str = "/data/local-files/?d=",
                 states: tuple[str, ...] = ("open",), limit: Optional[int] = None) -> dict:
    """Write queue items (priority order) as Label Studio tasks, streamed to `out`; config beside it."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    store_root = q.catalog.path.parent / "store"
    n = 0
    cursor: tuple = (-1, -1, "")
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write("[")
        while limit is None or n < limit:
            rows = q.store.page_by_priority(tuple(states), cursor)
            if not rows:
                break
            for tier, rank, key in rows:
                cursor = (tier, rank, key)
                if limit is not None and n >= limit:
                    break
                record = q.catalog.get(key)
                if record is None:  # queued, but the record is gone: nothing to export
                    continue
                rel = store_root.relative_to(q.catalog.path.parent) / record.image[:2] / record.image
                meta = record.caption_meta or {}
                task = {
                    "data": {"image": image_prefix + rel.as_posix(), "key": key, "draft": record.caption,
                             "source": record.source, "product": record.product, "label": record.label,
                             "defect_types": ", ".join(record.defect_types) or "none",
                             "meta": f"{record.source} / {record.product} / {record.label}: "
                                     f"{', '.join(record.defect_types) or 'no defect'}"},
                    "meta": {"imdd_key": key},
                    "predictions": [{
                        "model_version": model_version(meta, record.caption_source),
                        "score": 1.0 if (meta.get("checks") or {}).get("passed", True) else 0.0,
                        "result": [{"id": "draft", "from_name": "caption", "to_name": "image", "type": "textarea",
                                    "value": {"text": [record.caption or ""]}}],
                    }],
                }
                fh.write(("," if n else "") + "\n" + json.dumps(task, sort_keys=True))
                n += 1
        fh.write("\n]\n")
    tmp.replace(out)
    config = out.with_name(out.stem + ".label_config.xml")
    config.write_text(LABEL_CONFIG, encoding="utf-8")
    return {"command": "review export", "format": "label-studio", "tasks": n, "out": str(out),
            "label_config": str(config), "image_prefix": image_prefix}


def _completed_by(annotation: dict) -> str:
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        who = who.get("email") or who.get("username") or who.get("id")
    who = str(who if who not in (None, "") else "unknown")
    return "label-studio:" + "".join(c if c.isalnum() or c in "_.@-" else "_" for c in who)[:48]


def _timestamp(value: Any) -> Optional[float]:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _read_result(annotation: dict) -> tuple[Optional[str], Optional[str], Optional[str]]:
    text = choice = reason = None
    for item in annotation.get("result") or []:
        value = item.get("value") or {}
        name = item.get("from_name")
        if item.get("type") == "textarea" or name == "caption":
            parts = value.get("text") or []
            text = " ".join(str(p) for p in (parts if isinstance(parts, list) else [parts]))
        elif name == "decision":
            choice = (value.get("choices") or [None])[0]
        elif name == "reason":
            reason = (value.get("choices") or [None])[0]
    return text, choice, reason


def import_tasks(q: ReviewQueue, path: Path) -> dict:
    """Apply a Label Studio JSON export as decisions (idempotent: a reviewer's second answer is skipped)."""
    try:
        tasks = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RunError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(tasks, list):
        raise RunError(f"{path}: expected Label Studio's JSON export (a list of tasks)")
    summary = {"command": "review import", "format": "label-studio", "tasks": len(tasks), "imported": 0,
               "cancelled": 0, "already_decided": 0, "not_open": 0, "unknown_keys": [], "invalid": [],
               "reviewers": []}
    reviewers: set[str] = set()
    for n, task in enumerate(tasks):
        try:
            _import_task(q, task, _task_ref(task, n), summary, reviewers)
        except (Invalid, ValueError, TypeError, AttributeError, KeyError, OverflowError) as exc:
            # a malformed task (wrong types, lone surrogates, absurd numbers): skipped and reported, the rest go on
            summary["invalid"].append({"task": _task_ref(task, n), "reason": _short_reason(exc)})
    summary["reviewers"] = sorted(reviewers)
    return summary


def _task_ref(task: Any, n: int) -> Any:
    """The task's Label Studio id when it is a plain integer, else its position (`#n`): never echoed text."""
    task_id = task.get("id") if isinstance(task, dict) else None
    return task_id if isinstance(task_id, int) and not isinstance(task_id, bool) else f"#{n}"


def _short_reason(exc: Exception) -> str:
    """The reason a task was skipped, without echoing its content."""
    if isinstance(exc, Invalid):
        return str(exc)[:200]
    if isinstance(exc, UnicodeError):
        return "text that is not valid Unicode (a lone surrogate?)"
    return f"malformed task ({type(exc).__name__})"


def _import_task(q: ReviewQueue, task: dict, ref: Any, summary: dict, reviewers: set[str]) -> None:
    """One task's annotations as decisions (see `import_tasks`)."""
    data = task.get("data") or {}
    key = str(data.get("key") or (task.get("meta") or {}).get("imdd_key") or "")
    if not valid_key(key):
        summary["invalid"].append({"task": ref, "reason": "no valid data.key"})
        return
    draft = data.get("draft")
    for annotation in task.get("annotations") or []:
        if annotation.get("was_cancelled"):
            summary["cancelled"] += 1
            continue
        text, choice, reason = _read_result(annotation)
        if choice == "reject":
            decision = "reject"
            reason = reason if reason in REASONS else "caption_unfixable"
        elif text is not None and " ".join(text.split()) != " ".join((draft or "").split()):
            decision = "edit"
        else:
            decision = "accept"
        name = _completed_by(annotation)
        reviewer = external_reviewer(q.db, name, "label-studio")
        reviewers.add(name)
        lead = annotation.get("lead_time")
        imported = {"format": "label-studio", "task_id": task.get("id"), "annotation_id": annotation.get("id"),
                    "lead_time": lead, "completed_by": annotation.get("completed_by"),
                    "at": _timestamp(annotation.get("created_at") or annotation.get("updated_at"))}
        try:
            q.submit(reviewer, key, decision, None, caption=text if decision == "edit" else None,
                     reason=reason if decision == "reject" else None,
                     time_spent=float(lead) if isinstance(lead, (int, float)) else None, imported=imported)
            summary["imported"] += 1
        except NotFound:
            summary["unknown_keys"].append(key)
        except Conflict as exc:
            summary["already_decided" if "already" in str(exc) else "not_open"] += 1
        except Invalid as exc:
            summary["invalid"].append({"task": ref, "reason": str(exc)[:200]})
