"""`--markdown`: an `evaluate` result as the paper's tables, with split, counts and provenance."""

from __future__ import annotations

import json

from .scoring import METRICS

NAMES = {"image_auroc": "image AUROC", "pixel_auroc": "pixel AUROC", "aupro": "AUPRO (FPR<=0.3)",
         "iou": "IoU (map>=0.5)", "map50": "mAP@0.5", "map50_95": "mAP@0.5:0.95", "accuracy": "accuracy",
         "miou": "mIoU"}
TASKS = {"image_auroc": "Anomaly detection", "pixel_auroc": "Anomaly segmentation", "aupro": "Anomaly segmentation",
         "iou": "Anomaly segmentation", "map50": "Defect detection", "map50_95": "Defect detection",
         "accuracy": "Classification", "miou": "Open-vocabulary segmentation"}


def _value(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def _count_text(metric: str, counts: dict) -> str:
    if metric == "image_auroc":
        text = f"{counts['records']} images: {counts['normal']} normal, {counts['defective']} defective"
    elif metric in ("pixel_auroc", "aupro", "iou"):
        text = f"{counts['images']} images, {counts['pixels']:,} pixels, {counts['regions']} defect regions"
    elif metric in ("map50", "map50_95"):
        text = f"{counts['images']} images, {counts['truth_boxes']} boxes, {counts['classes']} classes"
    elif metric == "miou":
        text = f"{counts['images']} images, {counts['pixels']:,} pixels, {counts['classes']} classes"
        if counts.get("no_class_truth"):
            text += f"; {counts['no_class_truth']} without class ground truth"
    else:
        text = f"{counts['correct']}/{counts['records']} right"
    if counts.get("no_prediction"):
        text += f"; {counts['no_prediction']} without prediction"
    if counts.get("missing"):
        text += f"; **{counts['missing']} records of the split missing (--allow-missing)**"
    return text


def _group_table(title: str, groups: dict[str, dict]) -> list[str]:
    lines = [f"### {title}", "", "| " + " | ".join(["Group"] + [NAMES[m] for m in METRICS]) + " |",
             "|" + "---|" * (len(METRICS) + 1)]
    for name, res in groups.items():
        lines.append("| " + " | ".join([name] + [_value(res[m]) for m in METRICS]) + " |")
    return lines + [""]


def markdown_report(result: dict) -> str:
    """The Markdown text: main table (task, dataset/metric, value), group tables, provenance."""
    split = result.get("split") or "all splits"
    dataset = f"{result['data']} ({split})"
    lines = [f"## Evaluation on {dataset}", "", "| Task | Dataset / metric | Value |", "|---|---|---|"]
    for metric in METRICS:
        lines.append(f"| {TASKS[metric]} | {dataset} / {NAMES[metric]} | {_value(result[metric])} "
                     f"({_count_text(metric, result['counts'][metric])}) |")
    lines.append("")
    if result.get("per_class_iou"):
        lines += ["### Per-class IoU (confusion matrix over the split; mIoU = mean over these classes)", "",
                  "| Class | IoU |" + (" Seen |" if "seen" in result else ""),
                  "|---|---|" + ("---|" if "seen" in result else "")]
        seen = set(result.get("classes_seen") or [])
        for name, value in result["per_class_iou"].items():
            lines.append(f"| {name} | {_value(value)} |" + ((" yes |" if name in seen else " no |")
                                                            if "seen" in result else ""))
        if result.get("background_iou") is not None:
            lines.append(f"| (background, not in the mean) | {_value(result['background_iou'])} |"
                         + (" |" if "seen" in result else ""))
        if "seen" in result:
            lines += ["", f"mIoU seen: {_value(result['seen']['miou'])}, unseen: {_value(result['unseen']['miou'])}"]
        lines.append("")
    if result.get("by_source"):
        lines += _group_table("By source", result["by_source"])
    if result.get("by_class"):
        lines += _group_table("By defect class (all normal images + the class's defective images)", result["by_class"])
    if "seen" in result:
        seen = ", ".join(result["classes_seen"]) or "–"
        unseen = ", ".join(result["classes_unseen"]) or "–"
        lines += _group_table(f"Seen ({seen}) and unseen ({unseen}) classes",
                              {"seen": result["seen"], "unseen": result["unseen"]})
    prov = result["provenance"]
    lines += ["### Provenance", "",
              f"- data: `{result['data']}`, split `{split}`"
              + (f", where `{result['where']}`" if result.get("where") else ""),
              f"- records: {result['records']}, with a prediction: {result['predicted']}, "
              f"missing: {result['missing']}, predictions outside the split: {result['extra']}"
              + (f", left out by --where: {result['outside_where']}" if result.get("where") else ""),
              f"- predictions: `{prov['folder']}`, predictions.jsonl sha256 `{prov['predictions_sha256']}`"]
    if prov.get("meta"):
        lines += ["- model (the predictions' meta.json):", "", *_fenced(prov["meta"])]
    if result.get("class_split"):
        lines += ["- class split:", "", *_fenced(result["class_split"])]
    return "\n".join(lines) + "\n"


def _fenced(value) -> list[str]:
    """`value` as an indented JSON code block: safe for any text inside (an inline code span ended at the first
    backtick of a value, e.g. a command named in meta.json's ensemble reason)."""
    text = json.dumps(value, indent=2, sort_keys=True)
    fence = "```"
    while fence in text:
        fence += "`"
    return [f"  {fence}json", *(f"  {line}" for line in text.splitlines()), f"  {fence}"]
