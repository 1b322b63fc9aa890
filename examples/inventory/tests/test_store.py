"""An integration test: the inventory round-trips through a real PostgreSQL.

testgate starts the database (``--service postgres``) and gives each xdist worker its
own, so these tests can empty the table without disturbing tests on other workers.
"""

from collections.abc import Iterator

import pg8000.native
import pytest

from inventory import Inventory
from inventory.store import connect, load, save


@pytest.fixture
def connection() -> Iterator[pg8000.native.Connection]:
    connection = connect()
    yield connection
    connection.close()


def test_round_trip(connection: pg8000.native.Connection) -> None:
    save(connection, Inventory(levels={"apple": 3, "pear": 10}))
    assert load(connection).levels == {"apple": 3, "pear": 10}


def test_save_replaces(connection: pg8000.native.Connection) -> None:
    save(connection, Inventory(levels={"apple": 3}))
    save(connection, Inventory(levels={"plum": 1}))
    assert load(connection).total() == 1
