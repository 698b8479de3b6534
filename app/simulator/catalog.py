"""The product catalogue: products in categories with log-normal prices.

Prices follow a log-normal law around a per-category median, as retail prices
do, and end in .99 or .49. Each category's products are kept sorted by price so
that a shopper's price sensitivity is a cheap index computation.

Examples
--------
>>> catalog = Catalog.build(seed=42)
>>> len(catalog.products), len(catalog.categories)
(500, 12)
>>> p = catalog.products[0]
>>> p.product_id, p.category in catalog.categories, p.price > 0
('SKU-00001', True, True)
>>> Catalog.build(seed=42) == catalog
True
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Final, NamedTuple

CURRENCY: Final = "GBP"


class CategorySpec(NamedTuple):
    """How a category is priced and searched for."""

    name: str
    weight: float  # share of the product range
    median_price: float
    sigma: float  # spread of log(price)
    search_terms: tuple[str, ...]


CATEGORIES: Final[tuple[CategorySpec, ...]] = (
    CategorySpec("electronics", 1.4, 120.0, 0.8,
                 ("headphones", "wireless earbuds", "4k tv", "laptop", "phone charger", "smart watch")),
    CategorySpec("fashion", 1.6, 45.0, 0.6,
                 ("summer dress", "denim jacket", "trainers", "wool jumper", "chinos", "raincoat")),
    CategorySpec("beauty", 1.0, 22.0, 0.6,
                 ("moisturiser", "lipstick", "perfume", "shampoo", "face serum", "mascara")),
    CategorySpec("home", 1.2, 35.0, 0.7,
                 ("bed sheets", "table lamp", "cushion", "saucepan set", "bath towels", "rug")),
    CategorySpec("grocery", 0.9, 6.0, 0.5,
                 ("coffee beans", "olive oil", "dark chocolate", "green tea", "pasta", "granola")),
    CategorySpec("toys", 0.8, 25.0, 0.6,
                 ("lego", "board game", "puzzle", "plush bear", "rc car", "doll house")),
    CategorySpec("sports", 0.8, 40.0, 0.7,
                 ("yoga mat", "running shoes", "dumbbells", "bike helmet", "football", "tennis racket")),
    CategorySpec("books", 0.7, 12.0, 0.4,
                 ("cookbook", "crime novel", "biography", "children's book", "travel guide", "fantasy")),
    CategorySpec("garden", 0.6, 30.0, 0.7,
                 ("garden hose", "plant pot", "seeds", "lawn mower", "bird feeder", "secateurs")),
    CategorySpec("jewellery", 0.5, 90.0, 0.8,
                 ("silver necklace", "earrings", "gold ring", "bracelet", "watch", "pendant")),
    CategorySpec("pets", 0.6, 15.0, 0.6,
                 ("dog food", "cat litter", "dog bed", "cat toy", "aquarium", "lead")),
    CategorySpec("health", 0.6, 12.0, 0.5,
                 ("vitamins", "protein powder", "plasters", "thermometer", "toothbrush", "sunscreen")),
)


class Product(NamedTuple):
    """One product: identifier, category and unit price in :data:`CURRENCY`."""

    product_id: str
    category: str
    price: float


@dataclass(frozen=True)
class Catalog:
    """Products, and per category the same products sorted by ascending price."""

    products: tuple[Product, ...]
    by_category: dict[str, tuple[Product, ...]]
    search_terms: dict[str, tuple[str, ...]]

    @property
    def categories(self) -> tuple[str, ...]:
        return tuple(self.by_category)

    @classmethod
    def build(cls, seed: int, size: int = 500) -> Catalog:
        """A catalogue of ``size`` products (at least one per category) drawn from ``seed``."""
        rng = random.Random(f"persona-sim/{seed}/catalog")
        total_weight = sum(spec.weight for spec in CATEGORIES)
        counts = [max(1, round(size * spec.weight / total_weight)) for spec in CATEGORIES]
        # Rounding leaves the total a few off; the largest category absorbs the difference.
        counts[counts.index(max(counts))] += size - sum(counts)
        products: list[Product] = []
        for spec, count in zip(CATEGORIES, counts, strict=True):
            for _ in range(count):
                price = _retail_price(rng.lognormvariate(math.log(spec.median_price), spec.sigma))
                products.append(Product(f"SKU-{len(products) + 1:05d}", spec.name, price))
        by_category = {
            spec.name: tuple(sorted((p for p in products if p.category == spec.name), key=lambda p: p.price))
            for spec in CATEGORIES
        }
        return cls(tuple(products), by_category, {spec.name: spec.search_terms for spec in CATEGORIES})

    def pick(self, rng: random.Random, category: str, price_bias: float) -> Product:
        """A product of ``category``; ``price_bias`` > 0 favours dear ones, < 0 cheap ones.

        A bias ``b`` draws the price rank as ``u ** (1 + |b|)`` from the favoured
        end, so 0 is uniform and 3 puts about half the picks in the top 16 %.
        """
        items = self.by_category[category]
        u = rng.random() ** (1.0 + abs(price_bias))
        rank = int(len(items) * (1.0 - u if price_bias > 0 else u))
        return items[min(rank, len(items) - 1)]


def _retail_price(raw: float) -> float:
    """Round to a shelf price: x.99 above 5, x.49/x.99 below, never under 0.99.

    >>> _retail_price(12.3), _retail_price(3.2), _retail_price(0.1)
    (11.99, 2.99, 0.99)
    """
    if raw < 2.0:
        return 0.99
    if raw < 5.0:
        return round(math.floor(raw * 2) / 2 - 0.01, 2)
    return round(round(raw) - 0.01, 2)
