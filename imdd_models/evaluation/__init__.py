"""Evaluation: any model's predictions folder scored against IMDD shards, and generated images against real ones.

- `predictions`: the predictions folder format, `validate_predictions(folder)` for its writers;
- `anomaly`: image/pixel AUROC, AUPRO, IoU; `detection`: COCO box AP (pycocotools);
  `classification`: accuracy; `classiou`: per-class IoU and mIoU of class maps;
  `scoring`/`run`: joining records and predictions, groups, `evaluate()`;
- `report`: the Markdown tables; `generation`: FID, KID and IS (torchmetrics) with a user-supplied feature net.
"""

from .predictions import (PredictionError, PredictionSet, load_anomaly_map, load_class_map, read_predictions,
                          scan_predictions, validate_predictions)
from .report import markdown_report
from .run import evaluate

__all__ = ["PredictionError", "PredictionSet", "evaluate", "load_anomaly_map", "load_class_map", "markdown_report",
           "read_predictions", "scan_predictions", "validate_predictions"]
