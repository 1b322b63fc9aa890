"""A small stock-keeping library: testgate's example project."""

from __future__ import annotations

from dataclasses import dataclass, field


class OutOfStockError(Exception):
    """Raised when more is taken than the inventory holds."""


@dataclass
class Inventory:
    """Quantities on hand, by stock-keeping unit."""

    levels: dict[str, int] = field(default_factory=dict)
    minimum: int = 5

    def add(self, sku: str, quantity: int) -> None:
        if quantity <= 0:
            raise ValueError("quantity must be positive")
        self.levels[sku] = self.levels.get(sku, 0) + quantity

    def remove(self, sku: str, quantity: int) -> None:
        have = self.levels.get(sku, 0)
        if quantity > have:
            raise OutOfStockError(f"{sku}: {quantity} wanted, {have} on hand")
        self.levels[sku] = have - quantity

    def reorder_quantity(self, sku: str) -> int:
        """How many to order to get back to the minimum (0 when stocked enough)."""
        shortfall = 0
        if self.levels.get(sku, 0) < self.minimum:
            shortfall = self.minimum - self.levels.get(sku, 0)
        return shortfall

    def total(self) -> int:
        return sum(self.levels.values())
