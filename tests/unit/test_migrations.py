"""Migrating an empty database to head (dpvault.store.engines.migrate) yields exactly store/tables.py.

Alembic's autogenerate comparison is the main check (tables, columns, types, nullability, server
defaults, indexes, unique constraints). It cannot see everything on every backend (on SQLite it never
reports a unique constraint the database has but the metadata lacks), so the reflected primary keys,
unique column sets and indexes are also compared directly, both ways.

SQLite always; PostgreSQL too when DPVAULT_TEST_DATABASE=postgresql (tests/conftest.py's ``postgres``).
"""

from __future__ import annotations

import pprint
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    Column,
    Connection,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    inspect,
)

from dpvault.store.engines import MIGRATIONS, migrate, sync_url
from dpvault.store.tables import metadata
from tests.support import PostgresServer

OPTS = {"compare_type": True, "compare_server_default": True}


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path, postgres: PostgresServer | None) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    if postgres is None:
        pytest.skip("PostgreSQL is compared when DPVAULT_TEST_DATABASE=postgresql")
    return postgres.create_database()


@pytest.fixture
def migrated(database_url: str) -> Iterator[Connection]:
    """A connection to an empty database migrated to head."""
    migrate(database_url)
    engine = create_engine(sync_url(database_url))
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def differences(conn: Connection, target: MetaData) -> list[Any]:
    return compare_metadata(MigrationContext.configure(conn, opts=OPTS), target)


def test_migrating_to_head_yields_exactly_the_tables_module(migrated: Connection) -> None:
    diff = differences(migrated, metadata)
    assert diff == [], "migrations and store/tables.py differ:\n" + pprint.pformat(diff)


# -- the same, reflected directly ---------------------------------------------------------------


def _unique_sets_in_metadata(table: Table) -> set[tuple[str, ...]]:
    sets = {tuple(c.name for c in uc.columns) for uc in table.constraints if isinstance(uc, UniqueConstraint)}
    sets |= {tuple(c.name for c in ix.columns) for ix in table.indexes if ix.unique}
    return sets


def _indexes_in_metadata(table: Table) -> set[tuple[str | None, tuple[str, ...]]]:
    return {(ix.name, tuple(c.name for c in ix.columns)) for ix in table.indexes if not ix.unique}


def _unique_sets_in_database(conn: Connection, name: str) -> set[tuple[str, ...]]:
    insp = inspect(conn)
    sets = {tuple(uc["column_names"]) for uc in insp.get_unique_constraints(name)}
    sets |= {
        tuple(ix["column_names"])  # type: ignore[arg-type]
        for ix in insp.get_indexes(name)
        if ix["unique"] and not ix.get("duplicates_constraint")
    }
    return sets


def _indexes_in_database(conn: Connection, name: str) -> set[tuple[str | None, tuple[str, ...]]]:
    return {
        (ix["name"], tuple(ix["column_names"]))  # type: ignore[arg-type]
        for ix in inspect(conn).get_indexes(name)
        if not ix["unique"]
    }


def test_tables_keys_uniques_and_indexes_match_when_reflected(migrated: Connection) -> None:
    insp = inspect(migrated)
    assert set(insp.get_table_names()) == set(metadata.tables) | {"alembic_version"}
    for name, table in metadata.tables.items():
        columns = {c["name"]: c for c in insp.get_columns(name)}
        assert set(columns) == {c.name for c in table.columns}, name
        for column in table.columns:
            assert columns[column.name]["nullable"] == column.nullable, (name, column.name)
        assert insp.get_pk_constraint(name)["constrained_columns"] == [c.name for c in table.primary_key], (
            name
        )
        assert _unique_sets_in_database(migrated, name) == _unique_sets_in_metadata(table), name
        assert _indexes_in_database(migrated, name) == _indexes_in_metadata(table), name


def test_the_database_is_at_the_single_head_and_migrating_again_changes_nothing(
    database_url: str, migrated: Connection
) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    heads = ScriptDirectory.from_config(config).get_heads()
    assert len(heads) == 1, f"the migrations have several heads: {heads}"
    assert MigrationContext.configure(migrated).get_current_heads() == tuple(heads)
    migrated.rollback()
    migrate(database_url)
    assert differences(migrated, metadata) == []


# -- the comparison is not blind ----------------------------------------------------------------


def _copy() -> MetaData:
    target = MetaData()
    for table in metadata.sorted_tables:
        table.to_metadata(target)
    return target


def _drop_uniques(target: MetaData, table: str) -> None:
    t = target.tables[table]
    for constraint in [c for c in t.constraints if isinstance(c, UniqueConstraint)]:
        t.constraints.remove(constraint)
    for column in t.columns:
        column.unique = False


def _drift_cases() -> list[Any]:
    def case(id_: str, edit: Any) -> Any:
        return pytest.param(edit, id=id_)

    return [
        case("extra-column", lambda m: m.tables["resources"].append_column(Column("extra", Text))),
        case("string-length", lambda m: setattr(m.tables["resources"].c.kind, "type", String(64))),
        case("column-type", lambda m: setattr(m.tables["resources"].c.revision, "type", String(10))),
        case("nullability", lambda m: setattr(m.tables["resources"].c.name, "nullable", True)),
        case("extra-index", lambda m: Index("ix_extra", m.tables["resources"].c.name)),
        case(
            "extra-unique",
            lambda m: m.tables["operations"].append_constraint(UniqueConstraint("resource_key")),
        ),
        case("missing-unique", lambda m: _drop_uniques(m, "jobs")),
        case("extra-table", lambda m: Table("extra", m, Column("id", Integer, primary_key=True))),
        case("missing-table", lambda m: m.remove(m.tables["operations"])),
    ]


@pytest.mark.parametrize("edit", _drift_cases())
def test_a_drifted_schema_would_be_noticed(migrated: Connection, edit: Any) -> None:
    drifted = _copy()
    edit(drifted)
    noticed = bool(differences(migrated, drifted))
    try:
        for name, table in drifted.tables.items():
            assert set(inspect(migrated).get_table_names()) == set(drifted.tables) | {"alembic_version"}
            columns = {c["name"]: c for c in inspect(migrated).get_columns(name)}
            assert set(columns) == {c.name for c in table.columns}
            assert all(columns[c.name]["nullable"] == c.nullable for c in table.columns)
            assert _unique_sets_in_database(migrated, name) == _unique_sets_in_metadata(table)
            assert _indexes_in_database(migrated, name) == _indexes_in_metadata(table)
    except AssertionError:
        noticed = True
    assert noticed, "neither comparison noticed the drift"


def test_secrets_stored_before_0005_go_to_the_server_tenant(database_url: str) -> None:
    """An upgrade keeps every secret, now owned by the server's own tenant (what `secrets set` meant)."""
    from sqlalchemy import text

    from dpvault.settings import Settings

    engine = create_engine(sync_url(database_url))
    try:
        with engine.begin() as conn:
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = conn
            from alembic import command

            command.upgrade(config, "0004")
            conn.execute(
                text(
                    "INSERT INTO secrets VALUES ('https://kv/secrets/a', 'https://kv/secrets/A', :c, 1.0, 2.0)"
                ),
                {"c": b"ciphertext"},
            )
            command.upgrade(config, "head")
            rows = conn.execute(text("SELECT tenant, uri_key, uri, ciphertext FROM secrets_by_tenant")).all()
        assert [tuple(r) for r in rows] == [
            (Settings.tenant_id, "https://kv/secrets/a", "https://kv/secrets/A", b"ciphertext")
        ]
    finally:
        engine.dispose()
