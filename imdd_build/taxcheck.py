"""`imdd-build taxonomy check`: does every label a source can produce map to a canonical type?

Checked: every label listed in taxonomy.yaml's per-source tables; every fixed label vocabulary an
adapter declares (`labels`); every product domain in sources.yaml; and, when a workspace catalog
exists, every source label actually ingested (generic adapters included). Also reports the
taxonomy's own consistency problems and the domain / defect-type counts.
"""

from __future__ import annotations

from collections import Counter

from .catalog import Catalog
from .registry import SourceEntry
from .taxonomy import Taxonomy


def check_taxonomy(taxonomy: Taxonomy, registry: dict[str, SourceEntry], adapters: dict[str, type],
                   catalog: Catalog | None = None) -> dict:
    unmapped: list[dict] = []
    problems = list(taxonomy.problems())
    labels_by_type: Counter[str] = Counter()

    def check(source: str, label: str, where: str) -> None:
        r = taxonomy.resolve(source, label)
        if not r.mapped:
            unmapped.append({"source": source, "label": label, "where": where})
        elif r.type:
            labels_by_type[r.type] += 1

    for source, table in sorted(taxonomy.sources.items()):
        for label, value in (table or {}).items():
            target = value.get("type") if isinstance(value, dict) else value
            if target != "normal" and target not in taxonomy.defect_types:
                problems.append(f"taxonomy.yaml sources.{source}.{label}: {target!r} is not a defect type")
            check(source, str(label), "taxonomy.yaml")
    for source_id, entry in sorted(registry.items()):
        adapter = adapters.get(entry.adapter_id)
        if adapter is None:
            problems.append(f"sources.yaml {source_id}: no adapter {entry.adapter_id!r}")
            continue
        for label in getattr(adapter, "labels", ()) or ():
            check(source_id, str(label), f"adapter {entry.adapter_id}")
        if source_id not in taxonomy.sources:
            problems.append(f"sources.yaml {source_id}: no label table in taxonomy.yaml")
        for product, domain in sorted(entry.products.items()):
            if domain not in taxonomy.domains:
                problems.append(f"sources.yaml {source_id}: product {product} -> unknown domain {domain!r}")
        for domain in [entry.domain, *entry.domains]:
            if domain not in taxonomy.domains:
                problems.append(f"sources.yaml {source_id}: unknown domain {domain!r}")
    by_domain: dict[str, int] = {}
    by_defect_type: dict[str, int] = {}
    if catalog is not None:
        for source, label in catalog.defective_source_labels():
            check(source, str(label), "catalog")
        by_domain = catalog.domain_counts()
        by_defect_type = catalog.defect_type_counts()
    seen = set()
    unique = []
    for u in unmapped:
        k = (u["source"], u["label"])
        if k not in seen:
            seen.add(k)
            unique.append(u)
    leaf = [d for d in taxonomy.domains if not any(e.get("parent") == d for e in taxonomy.domains.values())]
    return {
        "command": "taxonomy check",
        "unmapped": unique,
        "problems": problems,
        "domains": len(taxonomy.domains),
        "leaf_domains": len(leaf),
        "defect_types": len(taxonomy.defect_types),
        "sources": len(taxonomy.sources),
        "source_labels": sum(len(t or {}) for t in taxonomy.sources.values()),
        "labels_per_defect_type": dict(sorted(labels_by_type.items())),
        "unused_defect_types": sorted(set(taxonomy.defect_types) - set(labels_by_type)),
        "catalog_by_domain": by_domain,
        "catalog_by_defect_type": by_defect_type,
    }
