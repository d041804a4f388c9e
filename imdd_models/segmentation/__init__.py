"""Stage 2: frozen diffusion features -> a Mask2Former-style open-vocabulary mask generator.

features.py (the frozen extractor: U-Net decoder and VAE encoder taps at t=50, seeded noise, implicit
captioner conditioning), adapter.py (taps -> stride 4..32 pyramid), model.py (HF Mask2Former pixel decoder and
transformer decoder + mask-embedding head + text classifier), vocabulary.py / text.py (defect words and their
frozen text embeddings), targets.py, losses.py, dataset.py (training set and few-shot selection), train.py
(`train-seg`), validation.py (`--eval-every`: the best held-out step), cache.py, checkpoint.py (the model
folder), postprocess.py, clip_head.py (the frozen CLIP classifier of the open-vocabulary ensemble), predict.py
(`predict`), folder.py (the predictions folder it writes) and calibrate.py (`calibrate`: predict's image
threshold chosen on held-out records).
"""

from .calibrate import calibrate, choose_threshold
from .config import PRESETS, SegConfig, get_config, load_seg_config
from .features import DiffusionFeatureExtractor, describe_taps
from .model import MaskGenerator, count_trainable
from .predict import load_model, predict
from .train import TrainOptions, train_seg

__all__ = ["PRESETS", "DiffusionFeatureExtractor", "MaskGenerator", "SegConfig", "TrainOptions", "calibrate",
           "choose_threshold", "count_trainable", "describe_taps", "get_config", "load_model", "load_seg_config",
           "predict", "train_seg"]
