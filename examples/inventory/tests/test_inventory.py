import pytest

from inventory import Inventory, OutOfStockError


@pytest.fixture
def stock() -> Inventory:
    inventory = Inventory()
    inventory.add("apple", 3)
    inventory.add("pear", 10)
    return inventory


def test_add_accumulates(stock: Inventory) -> None:
    stock.add("apple", 2)
    assert stock.levels["apple"] == 5


@pytest.mark.parametrize("quantity", [0, -1])
def test_add_rejects_non_positive(stock: Inventory, quantity: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        stock.add("apple", quantity)


def test_remove_takes_stock(stock: Inventory) -> None:
    stock.remove("pear", 4)
    assert stock.total() == 9


def test_remove_more_than_on_hand(stock: Inventory) -> None:
    with pytest.raises(OutOfStockError, match="apple: 4 wanted, 3 on hand"):
        stock.remove("apple", 4)


def test_reorder_low_stock(stock: Inventory) -> None:
    assert stock.reorder_quantity("apple") == 2
    assert stock.reorder_quantity("plum") == 5
