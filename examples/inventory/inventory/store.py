"""Keep an Inventory in PostgreSQL, at the address DATABASE_URL gives."""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

import pg8000.native

from inventory import Inventory


def connect(url: str | None = None) -> pg8000.native.Connection:
    """A connection to the database at ``url`` (default: the DATABASE_URL variable)."""
    parts = urlsplit(url or os.environ["DATABASE_URL"])
    return pg8000.native.Connection(
        unquote(parts.username or "postgres"),
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        database=unquote(parts.path.lstrip("/")),
        password=unquote(parts.password) if parts.password else None,
    )


def save(connection: pg8000.native.Connection, inventory: Inventory) -> None:
    """Replace the stored levels with the inventory's."""
    connection.run("CREATE TABLE IF NOT EXISTS stock (sku text PRIMARY KEY, quantity int)")
    connection.run("DELETE FROM stock")
    for sku, quantity in inventory.levels.items():
        connection.run("INSERT INTO stock VALUES (:sku, :quantity)", sku=sku, quantity=quantity)


def load(connection: pg8000.native.Connection) -> Inventory:
    """The inventory as stored."""
    rows = connection.run("SELECT sku, quantity FROM stock ORDER BY sku")
    return Inventory(levels={sku: quantity for sku, quantity in rows})
