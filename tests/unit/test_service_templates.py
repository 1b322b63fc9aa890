"""The local backend's kept data directories: what is copied, and what a failure leaves.

A real start copies a kept PostgreSQL cluster (tests/integration/test_services.py); these
are the file operations on their own, where a broken or unwritable cache must cost only
the initdb it would have saved.
"""

from __future__ import annotations

from pathlib import Path

from runner.services.local import _copy_template, _keep_template, templates_dir


def made_by_init(root: Path) -> Path:
    data = root / "service" / "data"
    (data / "base").mkdir(parents=True)
    (data / "PG_VERSION").write_text("15\n", "utf-8")
    (data / "base" / "1").write_text("pages", "utf-8")
    return data


def test_what_init_made_is_kept_whole_and_copied_back(tmp_path: Path) -> None:
    kept = templates_dir({"XDG_CACHE_HOME": str(tmp_path / "cache")}) / "postgres-0123"
    assert kept == tmp_path / "cache" / "testgate" / "services" / "postgres-0123"
    target = tmp_path / "next" / "data"
    target.parent.mkdir()
    assert _copy_template(kept, target, None) is False  # nothing kept yet
    _keep_template(made_by_init(tmp_path), kept)
    assert sorted(path.name for path in kept.iterdir()) == [".complete", "data"]
    assert _copy_template(kept, target, None) is True
    assert (target / "base" / "1").read_text("utf-8") == "pages"
    assert [path.name for path in kept.parent.iterdir()] == ["postgres-0123"]  # no staging left


def test_a_second_keeper_leaves_the_first_ones_template(tmp_path: Path) -> None:
    kept = tmp_path / "services" / "postgres-0123"
    made = made_by_init(tmp_path)
    _keep_template(made, kept)
    (made / "PG_VERSION").write_text("changed\n", "utf-8")
    _keep_template(made, kept)  # another start finished initdb too: the first one stays
    assert (kept / "data" / "PG_VERSION").read_text("utf-8") == "15\n"
    assert [path.name for path in kept.parent.iterdir()] == ["postgres-0123"]


def test_a_broken_or_unwritable_cache_only_costs_the_initdb(tmp_path: Path) -> None:
    broken = tmp_path / "services" / "postgres-0123"
    broken.mkdir(parents=True)
    (broken / ".complete").write_text("", "utf-8")  # marked, but its data is gone
    target = tmp_path / "next" / "data"
    target.parent.mkdir()
    assert _copy_template(broken, target, None) is False
    assert not target.exists()  # nothing half-copied is left to start from
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache dir would be", "utf-8")
    _keep_template(made_by_init(tmp_path), blocked / "services" / "postgres-0123")
    assert blocked.read_text("utf-8") == "a file where the cache dir would be"
