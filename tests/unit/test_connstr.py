"""Connection strings as Azure Backup stores them, and the libpq forms, into libpq parameters."""

from __future__ import annotations

import pytest

from dpvault.engines.postgres.connstr import parse
from dpvault.errors import UserError


def test_ado_net_string_as_azure_backup_writes_it() -> None:
    params = parse(
        "Server=pg.example.com;Database=testdb;Port=5432;User Id=backup@pg;Password=s3cret;Ssl Mode=Require;"
    )
    assert params == {
        "host": "pg.example.com", "dbname": "testdb", "port": "5432", "user": "backup@pg",
        "password": "s3cret", "sslmode": "require",
    }  # fmt: skip


def test_an_unquoted_semicolon_in_a_value_is_reported_not_misread() -> None:
    with pytest.raises(UserError) as raised:
        parse("Server=h;Database=d;User Id=u;Password=s3cr;et;Ssl Mode=Require;")
    assert "quote" in raised.value.message


def test_ado_net_keys_are_case_insensitive_and_values_may_be_quoted() -> None:
    params = parse(
        'server=h; DATABASE=db; port=6543; USER ID=u; password="p;w=\'x"; SSL MODE=verifyfull; Pooling=true'
    )
    assert params == {
        "host": "h",
        "dbname": "db",
        "port": "6543",
        "user": "u",
        "password": "p;w='x",
        "sslmode": "verify-full",
    }


def test_libpq_uri_and_keywords() -> None:
    assert parse("postgresql://u:pw@h:5433/db?sslmode=disable") == {
        "user": "u", "password": "pw", "host": "h", "port": "5433", "dbname": "db", "sslmode": "disable",
    }  # fmt: skip
    assert parse("host=h port=5432 dbname=db user=u password=pw") == {
        "host": "h", "port": "5432", "dbname": "db", "user": "u", "password": "pw",
    }  # fmt: skip


@pytest.mark.parametrize(
    "text",
    ["", "   ", "Database=db;User Id=u", "Server=h;User Id=u", "Server=h;Database=d;Port=abc", "Server=h;Database=d;Ssl Mode=Maybe",
     "Server=h;Database", "Server=h;Database=\"unterminated", "postgresql://h:notaport/db",
     # libpq keywords that would read dpvault's files or change the session are refused
     "postgresql://u@h/db?passfile=/etc/shadow", "host=h dbname=db sslkey=/root/key", "postgresql://h/db?service=x",
     "host=h dbname=db options=-cstatement_timeout=1", "postgresql://h/db?sslmode=sometimes",
     "Server=h;Database=d;Timeout=ten", "postgresql://h/db?connect_timeout=99999999999"],
)  # fmt: skip
def test_unusable_strings_are_user_errors(text: str) -> None:
    with pytest.raises(UserError) as raised:
        parse(text)
    assert raised.value.code == "UserErrorInvalidConnectionString"
    assert raised.value.recommended_action
