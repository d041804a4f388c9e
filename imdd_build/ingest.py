"""Ingest: adapter -> normalize -> content store -> catalog, resumable and idempotent.

Each raw sample gets a fingerprint of everything its record depends on (the original bytes, the
mask bytes, the adapter's facts, the registry entry, the normalize options). A sample whose key
already has that fingerprint in the catalog is skipped without decoding; anything else is
normalized and upserted. Records are committed in batches, so a killed run loses at most one
uncommitted batch and a re-run redoes exactly that.

Scale: the adapter's listing streams into the executor (a local process pool or Ray) with a
bounded window of jobs in flight, and the driver keeps no per-sample state in memory (key
collisions are checked in a temporary SQLite table), so memory stays flat at millions of samples.
Outcomes come back in input order, so the catalog is the same whatever the executor and workers.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .catalog import Catalog
from .executor import Executor, make_executor
from .geometry import transform_box
from .maskops import box_attributes, mask_attributes, mask_to_boxes
from .normalize import NormalizeOptions, NormalizedImage, SampleError, encode_mask, normalize_image_views, \
    normalize_pixel_views
from .record import DefectAttributes, DefectLabel, Quarantined, Record, make_key, tile_key
from .registry import SourceEntry
from .sources import RawSample, get_adapter
from .sourcekit.listing import open_listing
from .store import Store, sha256_file
from .taxonomy import Resolved, load_taxonomy, norm_label
from .views import OriginalLabels, canvas_labels, class_boxes, instances, plan_views, retype
from .workspace import Workspace

NORMALIZER_VERSION = "4"  # 4: class_mask, instances, crop keeps the defect, tile views


@dataclass
class Job:
    sample: RawSample
    key: str
    known_fingerprint: str | None


@dataclass
class Outcome:
    key: str
    records: list[Record] = field(default_factory=list)  # one, or one per tile
    fingerprint: str | None = None
    quarantined: Quarantined | None = None

    @property
    def record(self) -> Record | None:
        return self.records[0] if self.records else None

    @property
    def skipped(self) -> bool:
        return not self.records and self.quarantined is None


def _pixels_sha(pixels) -> str:
    a = np.ascontiguousarray(pixels)
    return hashlib.sha256(f"{a.shape}{a.dtype}".encode() + a.tobytes()).hexdigest()


class SampleNormalizer:
    """Turns one Job into an Outcome. A plain object so it pickles into worker processes."""

    def __init__(self, entry: SourceEntry, base: Path, store_root: Path, options: NormalizeOptions,
                 label_map: dict | None = None):
        self.entry, self.base, self.store, self.options = entry, base, Store(store_root), options
        self.label_map = label_map or {}
        self._entry_facts = entry.model_dump(mode="json")  # the same for every sample: dump once

    def fingerprint(self, job: Job, image_sha: str, mask_sha: str | None) -> str:
        facts = {"v": NORMALIZER_VERSION, "image": image_sha, "mask": mask_sha, "sample": job.sample.facts(),
                 "entry": self._entry_facts, "options": self.options.fingerprint(),
                 "labels": [asdict(r) for r in self._resolve(job.sample)]}
        return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()

    def _resolve(self, sample: RawSample) -> list[Resolved]:
        taxonomy = load_taxonomy()
        return [taxonomy.resolve(self.entry.id, label, self.label_map) for label in sample.source_labels]

    def __call__(self, job: Job) -> Outcome:
        sample = job.sample
        try:
            try:
                image_sha = _pixels_sha(sample.pixels) if sample.pixels is not None \
                    else sha256_file(self.base / sample.rel_path)
            except OSError as exc:
                raise SampleError(f"cannot read file: {exc.strerror or exc}") from exc
            mask_sha = sample.mask.fingerprint(self.base) if sample.mask is not None else None
            fingerprint = self.fingerprint(job, image_sha, mask_sha)
            if fingerprint == job.known_fingerprint:
                return Outcome(job.key)
            return Outcome(job.key, records=self._build(job, image_sha), fingerprint=fingerprint)
        except SampleError as exc:
            return Outcome(job.key, quarantined=Quarantined(source=self.entry.id, path=sample.rel_path, reason=str(exc)))
        except Exception as exc:  # a decoder bug on one odd file must not stop a million-image run
            reason = f"unexpected {type(exc).__name__}: {exc}"
            return Outcome(job.key, quarantined=Quarantined(source=self.entry.id, path=sample.rel_path, reason=reason))

    def _build(self, job: Job, image_sha: str) -> list[Record]:
        sample = job.sample
        defective = sample.label == "defective"
        resolved = self._resolve(sample)
        defect_types: list[str] = []
        if defective:
            for r in resolved:
                if not r.normal:
                    defect_types.append(r.type or norm_label(r.source_label) or "anomaly")
            defect_types = list(dict.fromkeys(defect_types)) or ["anomaly"]
        found: dict = {}

        def plan(width: int, height: int):
            # The labels are loaded once the image's size is known; crop and tile need them to choose.
            found["labels"] = self._original_labels(sample, width, height)
            geometries, found["note"] = plan_views(width, height, self.options, found["labels"], defective)
            return geometries

        if sample.pixels is not None:
            views = normalize_pixel_views(sample.pixels, self.options, sample.nearest, plan)
        else:
            views = normalize_image_views(self.base / sample.rel_path, self.options, plan)
        labels: OriginalLabels = found["labels"]
        class_types = None
        if labels.index is not None and defective:
            class_types = [self._box_label((name,))[0] for name in labels.class_names]
            defect_types += [t for t in dict.fromkeys(class_types) if t not in defect_types]
        tiled = views[0].geometry.resize_mode == "tile"
        return [self._view_record(job, image_sha, sample, img, labels, class_types, defect_types, resolved,
                                  tile_key(job.key, i) if tiled else job.key, found["note"])
                for i, img in enumerate(views)]

    def _original_labels(self, sample: RawSample, width: int, height: int) -> OriginalLabels:
        mask = index = None
        names: list[str] = []
        if sample.mask is not None:
            size, limit = (width, height), self.options.max_pixels
            classes = sample.mask.load_classes(self.base, size, limit) if sample.label == "defective" else None
            if classes is not None:
                index, names = classes
                mask = np.where(index > 0, 255, 0).astype(np.uint8)  # the same pixels as load() by contract
            else:
                mask = sample.mask.load(self.base, size, limit)
        return OriginalLabels(mask, index, names, list(sample.boxes))

    def _view_record(self, job: Job, image_sha: str, sample: RawSample, img: NormalizedImage,
                     labels: OriginalLabels, class_types: list[str] | None, defect_types: list[str],
                     resolved: list[Resolved], key: str, note: str | None) -> Record:
        defective = sample.label == "defective"
        tile = img.geometry.resize_mode == "tile"
        canvas = canvas_labels(labels, img.geometry, class_types, defect_types)
        boxes = [b for b in (transform_box(img.geometry, *self._box_label(raw)) for raw in sample.boxes)
                 if b is not None]
        label = sample.label
        if tile and defective:
            canvas = retype(canvas, boxes)
            label = "defective" if canvas.defect_types else "normal"
        types = canvas.defect_types if label == "defective" else []
        mask, class_mask = canvas.mask, canvas.class_mask
        if not boxes and mask is not None and label == "defective":
            boxes = class_boxes(class_mask, types) if class_mask is not None else mask_to_boxes(mask, types[0])
        if label != "defective":
            attributes = DefectAttributes()
        elif mask is not None and mask.any():
            attributes = mask_attributes(mask, img.geometry.content_box)
        else:
            attributes = box_attributes(boxes, img.geometry.content_box)
        if label == "defective":
            attributes.instances = instances(class_mask, types, boxes)
        if canvas.kept and label == "defective":
            note = note or "defect_kept"
        return Record(
            key=key, source=self.entry.id, domain=self.entry.domain_of(sample.product), product=sample.product,
            split=sample.our_split(), split_origin=sample.split_origin, source_split=sample.source_split,
            label=label, defect_types=types, source_labels=list(sample.source_labels),
            defect_labels=[DefectLabel(source_label=r.source_label, type=r.type, part=r.part) for r in resolved
                           if label == "defective" and not r.normal  # a normal image's own spelling is no defect
                           and (not tile or (r.type or norm_label(r.source_label) or "anomaly") in types)],
            source_attributes=dict(sample.attributes), source_path=sample.rel_path,
            mask_source_path=sample.mask.describe() if sample.mask is not None else None, sha256=image_sha,
            orig_width=img.orig_width, orig_height=img.orig_height, orig_mode=img.orig_mode,
            orig_format=img.orig_format, exif_orientation=img.exif_orientation, geometry=img.geometry,
            image=self.store.put(img.data, "jpg" if img.format == "jpeg" else "png"), image_format=img.format,
            mask=self.store.put(encode_mask(mask), "png") if mask is not None else None,
            class_mask=self.store.put(encode_mask(class_mask), "png") if class_mask is not None else None,
            parent=job.key if tile else None, resize_note=note,
            boxes=boxes, attributes=attributes, license=self.entry.license,
        )

    def _box_label(self, raw: tuple) -> tuple:
        """Box labels become canonical types too (the source spelling stays in source_labels)."""
        label, *coords = raw
        r = load_taxonomy().resolve(self.entry.id, str(label), self.label_map)
        return (r.type or norm_label(str(label)) or "defect", *coords)


@dataclass
class IngestResult:
    source: str
    root: str
    seen: int = 0
    written: int = 0
    unchanged: int = 0
    quarantined: list[Quarantined] = field(default_factory=list)
    resize_notes: Counter = field(default_factory=Counter)  # resize_note -> samples of this run

    def summary(self, catalog: Catalog) -> dict:
        """The run's counts plus the source's catalog counts by split, label and defect type."""
        return {
            "command": "ingest", "source": self.source, "root": self.root, "seen": self.seen,
            "written": self.written, "unchanged": self.unchanged, "quarantined": len(self.quarantined),
            "records": catalog.count(source=self.source),
            "by_split": catalog.counts_by("split", source=self.source),
            "by_label": catalog.counts_by("label", source=self.source),
            "by_defect_type": catalog.defect_type_counts(self.source),
            "unmapped_labels": catalog.unmapped_labels(self.source),
            "quarantine": [{"path": q.path, "reason": q.reason} for q in self.quarantined],
            # What crop/tile had to change for some samples so that no record claims an unseen defect.
            "resize_notes": dict(sorted(self.resize_notes.items())),
        }


def ingest(workspace: Workspace, source: str, root: Path, entry: SourceEntry, options: NormalizeOptions,
           workers: int = 1, limit: int | None = None, commit_every: int = 256,
           adapter_options: dict | None = None, label_map: dict | None = None,
           executor: Executor | str = "local", ray_address: str | None = None,
           on_total: Callable[[int], None] | None = None,
           on_outcome: Callable[[Outcome], None] | None = None,
           on_quarantine: Callable[[Quarantined], None] | None = None) -> IngestResult:
    """Ingest one source root into the workspace catalog; returns what happened.

    `source` names the adapter; records carry `entry.id` (the same for registry sources; the
    user's own id for generic adapters). Samples stream from the adapter into a bounded pool
    (`executor`: "local" process pool of `workers`, "ray" tasks on the cluster at `ray_address`,
    or an `Executor`); the driver commits the outcomes in input order.
    """
    if isinstance(executor, str):
        executor = make_executor(executor, workers, ray_address)
    adapter = get_adapter(source)(Path(root), entry=entry, **(adapter_options or {}))
    # Read up to the first sample now: a root that yields none is a run-level error before the
    # catalog records a run (the adapter found its dataset root in `locate()` at construction).
    listing = open_listing(adapter)
    source_id = entry.id
    result = IngestResult(source=source_id, root=str(root))
    catalog = workspace.catalog()
    run_id = catalog.start_run("ingest", {"source": source_id, "adapter": source, "root": str(root),
                                          "options": asdict(options)})
    catalog.begin_key_claims()
    pending_quarantine: list[Quarantined] = []

    def quarantine(item: Quarantined) -> None:
        item = item.model_copy(update={"source": source_id})
        pending_quarantine.append(item)
        if on_quarantine:
            on_quarantine(item)

    def jobs() -> Iterator[Job]:
        taken = 0
        for item in listing:
            if isinstance(item, Quarantined):
                quarantine(item)
                continue
            if limit is not None and taken >= limit:
                break
            taken += 1
            key = make_key(source_id, item.rel_path)
            first_path = catalog.claim_key(key, item.rel_path)
            if first_path is not None:
                quarantine(Quarantined(
                    source=source_id, path=item.rel_path, reason=f"key {key} collides with {first_path}"))
                continue
            yield Job(item, key, catalog.sample_fingerprint(key))

    if on_total:  # unknown totals leave the bar indeterminate (a spinner with count and rate)
        hint = adapter.count_hint()
        total = min(hint, limit) if hint is not None and limit is not None else (hint if hint is not None else limit)
        if total is not None:
            on_total(total)
    load_taxonomy()  # parsed once here, so forked workers inherit it instead of each parsing the YAML
    normalizer = SampleNormalizer(entry, adapter.base, workspace.store_root, options, label_map)
    batch: list[tuple[Record, str]] = []
    written_samples: list[tuple[str, list[str]]] = []  # (sample key, its record keys) of the batch

    def flush() -> None:
        catalog.upsert(batch, replace_views=written_samples)
        batch.clear()
        written_samples.clear()
        catalog.quarantine(pending_quarantine, run_id)
        result.quarantined.extend(pending_quarantine)
        pending_quarantine.clear()

    try:
        for outcome in executor.map(normalizer, jobs()):
            result.seen += 1
            if outcome.quarantined:
                quarantine(outcome.quarantined)
            elif outcome.records:
                batch.extend((record, outcome.fingerprint) for record in outcome.records)
                written_samples.append((outcome.key, [record.key for record in outcome.records]))
                result.written += 1
                result.resize_notes.update(sorted({r.resize_note for r in outcome.records} - {None}))
            else:
                result.unchanged += 1
            if on_outcome:
                on_outcome(outcome)
            if len(batch) >= commit_every:
                flush()
        flush()
        catalog.finish_run(run_id, {"seen": result.seen, "written": result.written,
                                    "unchanged": result.unchanged, "quarantined": len(result.quarantined)})
    finally:
        catalog.close()
    return result
