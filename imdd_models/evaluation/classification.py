"""Image-level classification: accuracy of the predicted `label` / `defect_type`."""

from __future__ import annotations


def is_correct(record_label: str, record_types: list[str], label: str | None, defect_type: str | None) -> bool:
    """Right when a normal record is predicted normal, or a defective one defective with one of its defect types."""
    if record_label == "normal":
        return label == "normal"
    return label == "defective" and defect_type is not None and defect_type in record_types


def accuracy(pairs: list[tuple[str, list[str], str | None, str | None]]) -> dict:
    """Accuracy over (record label, record defect types, predicted label, predicted type) tuples.

    Tuples whose predicted label is None have no prediction: counted as `no_prediction`, not scored.
    """
    scored = [p for p in pairs if p[2] is not None]
    correct = sum(1 for p in scored if is_correct(*p))
    return {"accuracy": correct / len(scored) if scored else None,
            "counts": {"records": len(scored), "correct": correct, "no_prediction": len(pairs) - len(scored)}}
