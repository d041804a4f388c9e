"""Token prices (USD per million tokens) and image token counts, configurable, never fetched.

The built-in table is a starting point written down by hand; prices change, so pass your own with
`--prices FILE.yaml` (same layout as DEFAULT_PRICES: model -> input/output/image_tokens_low/high/
batch_discount) or `--price-in/--price-out`. A model with no known price costs 0 and the run says
it was unpriced; `--max-cost` refuses to run unpriced.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import yaml
from ..errors import RunError

# USD per 1M tokens (input, output) as published by OpenAI when this was written; check before relying.
# image_tokens_*: tokens billed for one 512x512 image at detail low/high.
DEFAULT_PRICES: dict[str, dict] = {
    "gpt-4o-mini": {"input": 0.15, "output": 0.60, "image_tokens_low": 2833, "image_tokens_high": 8500},
    "gpt-4o": {"input": 2.50, "output": 10.00, "image_tokens_low": 85, "image_tokens_high": 255},
    "gpt-4.1": {"input": 2.00, "output": 8.00, "image_tokens_low": 85, "image_tokens_high": 255},
    "gpt-4.1-mini": {"input": 0.40, "output": 1.60, "image_tokens_low": 85, "image_tokens_high": 255},
    "gpt-4.1-nano": {"input": 0.10, "output": 0.40, "image_tokens_low": 85, "image_tokens_high": 255},
}
BATCH_DISCOUNT = 0.5  # the Batch API bills half


@dataclass(frozen=True)
class Prices:
    model: str
    input: float = 0.0  # USD per 1M input tokens
    output: float = 0.0  # USD per 1M output tokens
    image_tokens_low: int = 85
    image_tokens_high: int = 255
    batch_discount: float = BATCH_DISCOUNT
    known: bool = False

    def cost(self, input_tokens: int, output_tokens: int, batch: bool = False) -> float:
        usd = (input_tokens * self.input + output_tokens * self.output) / 1e6
        return usd * (1 - self.batch_discount) if batch else usd

    def image_tokens(self, detail: str) -> int:
        return self.image_tokens_low if detail == "low" else self.image_tokens_high

    def summary(self) -> dict:
        return {"model": self.model, "input_per_mtok": self.input, "output_per_mtok": self.output,
                "priced": self.known}


def load_prices(model: str, path: Path | None = None, price_in: float | None = None,
                price_out: float | None = None) -> Prices:
    table = dict(DEFAULT_PRICES)
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise RunError(f"--prices {path}: cannot read: {exc}") from None
        if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
            raise RunError(f"--prices {path}: expected a mapping of model -> {{input: USD/1M, output: USD/1M}}")
        table.update({str(k): v for k, v in data.items()})
    entry = table.get(model)
    if entry is None:  # dated snapshots ("gpt-4o-mini-2024-07-18") fall back to the family's price
        family = max((m for m in table if model.startswith(m + "-")), key=len, default=None)
        entry = table.get(family) if family else None
    prices = Prices(model=model)
    if entry is not None:
        try:
            prices = Prices(model=model, input=float(entry.get("input", 0)), output=float(entry.get("output", 0)),
                            image_tokens_low=int(entry.get("image_tokens_low", 85)),
                            image_tokens_high=int(entry.get("image_tokens_high", 255)),
                            batch_discount=float(entry.get("batch_discount", BATCH_DISCOUNT)), known=True)
        except (TypeError, ValueError) as exc:
            raise RunError(f"prices for {model}: {exc}") from None
    if price_in is not None or price_out is not None:
        prices = replace(prices, input=price_in if price_in is not None else prices.input,
                         output=price_out if price_out is not None else prices.output, known=True)
    return prices
