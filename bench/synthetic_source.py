"""A synthetic in-memory source for the memory benches (bench/ingest.py --memory, bench/dedupe.py
--publish-memory): n generated samples through the normal ingest path, no files on disk."""

from __future__ import annotations

import numpy as np


def register_synthetic(n: int, distinct: bool) -> str:
    """Register a `SourceAdapter` yielding n samples (every third defective, with a small mask); return its id.

    distinct=False: 24x32 images from 997 seeds (many exact duplicates), defective ones in test.
    distinct=True: every image different (8x8 noise upscaled to 32x32), one in five in test.
    """
    from imdd_build.sources import ADAPTERS, RawSample, SourceAdapter
    from imdd_build.sourcekit.masks import ArrayMask

    def image(i: int) -> np.ndarray:
        if distinct:
            noise = np.random.default_rng(i).integers(0, 255, (8, 8, 3), dtype=np.uint8)
            return np.repeat(np.repeat(noise, 4, 0), 4, 1)
        return np.random.default_rng(i % 997).integers(0, 255, (24, 32, 3), dtype=np.uint8)

    class Synthetic(SourceAdapter):
        id = "bench_distinct" if distinct else "bench_synthetic"

        def count_hint(self):
            return n

        def samples(self):
            for i in range(n):
                pixels = image(i)
                defective = i % 3 == 0
                mask = None
                if defective:
                    m = np.zeros(pixels.shape[:2], np.uint8)
                    m[4 + i % 7: 12, 5: 9 + i % 11] = 1
                    mask = ArrayMask(m)
                test = i % 5 == 0 if distinct else defective
                yield RawSample(rel_path=f"lot{i // 10000:03d}/img{i:07d}.png", product="part",
                                source_split="test" if test else "train",
                                label="defective" if defective else "normal",
                                source_labels=["scratch"] if defective else [], mask=mask, pixels=pixels)

    ADAPTERS[Synthetic.id] = Synthetic
    return Synthetic.id
