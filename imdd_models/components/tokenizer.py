"""The real CLIP BPE tokenizer, offline: built from the vocabulary that the open_clip_torch wheel ships.

`openai/clip-vit-large-patch14`'s `vocab.json`/`merges.txt` are exactly CLIP's BPE file laid out for
transformers (49,408 tokens: 256 byte symbols, the same with `</w>`, 48,894 merges, then
`<|startoftext|>` and `<|endoftext|>`), so writing them from open_clip's file gives an identical tokenizer
with no download.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
N_MERGES = 49152 - 256 - 2


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character table."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def bpe_path() -> Path:
    """open_clip's BPE file, located without importing open_clip (which imports torchvision)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the CLIP vocabulary comes with open_clip_torch: pip install 'imdd[models]'")
    path = Path(list(spec.submodule_search_locations)[0]) / BPE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing from the open_clip_torch install")
    return path


def write_clip_tokenizer(out: Path, model_max_length: int = 77) -> Path:
    """Write a transformers `CLIPTokenizer` folder (vocab.json, merges.txt, configs) to `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lines = gzip.open(bpe_path()).read().decode("utf-8").split("\n")[1:N_MERGES + 1]
    merges = [tuple(line.split()) for line in lines]
    symbols = list(_bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (out / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}, ensure_ascii=False))
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
               "pad_token": "<|endoftext|>"}
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": model_max_length, "do_lower_case": True,
              "clean_up_tokenization_spaces": False, **special}
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return out
