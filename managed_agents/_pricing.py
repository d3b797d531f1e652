"""List cost of a model request, from ``genai-prices`` (the Pydantic team's price table).

Cost is computed on the worker, inside the model activity, and recorded in history as the
activity's result: a price-table update never changes what a replayed workflow decides.
Amounts are integer billionths of a US dollar so no float rounding accumulates.
"""

from __future__ import annotations

import warnings
from decimal import Decimal

from managed_agents._models.session import RequestUsage

NANOS_PER_USD = 1_000_000_000
NANOS_PER_CENT = 10_000_000


def cost_nanos(model: str, usage: RequestUsage) -> int | None:
    """List cost in nano-USD, or None when the model has no known list price."""
    from genai_prices import Usage, calc_price

    cache_write = usage.cache_creation_input_tokens
    total_input = usage.input_tokens + usage.cache_read_input_tokens + cache_write
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            price = calc_price(
                Usage(
                    input_tokens=total_input,
                    output_tokens=usage.output_tokens,
                    cache_read_tokens=usage.cache_read_input_tokens,
                    cache_write_tokens=cache_write,
                ),
                model_ref=model,
                provider_id="anthropic",
            )
    except LookupError:
        return None
    return int((Decimal(price.total_price) * NANOS_PER_USD).to_integral_value())


def nanos_to_cents_str(nanos: int) -> str:
    """Minor units as the API writes them; rounded up so a cap fires at or before the charge."""
    return str(-(-nanos // NANOS_PER_CENT))
