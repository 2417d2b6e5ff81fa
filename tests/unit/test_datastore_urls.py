"""``open_datastore``: which store a ``--vault-store`` URL names, and a one-line DatastoreConfigError
naming what to fix -- never a secret -- for every URL or environment that cannot work."""

from __future__ import annotations

from pathlib import Path

import pytest

from dpvault.datastores import (
    Datastore,
    DatastoreConfigError,
    LocalDatastore,
    ObjectDatastore,
    open_datastore,
)

SECRET = "c2VjcmV0LXNlY3JldC1zZWNyZXQ="  # base64, like a real account key
AWS = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI-secret"}
AZURE = {"AZURE_STORAGE_ACCOUNT_NAME": "acct", "AZURE_STORAGE_ACCOUNT_KEY": SECRET}
SECRETS = (SECRET, "wJalrXUtnFEMI-secret", "AKIDEXAMPLE", "hunter2")


def _open(url: str, environ: dict[str, str], tmp_path: Path) -> Datastore:
    return open_datastore(url, data_dir_default=tmp_path / "default", heartbeat=1.0, environ=environ)


def _refused(url: str, environ: dict[str, str], tmp_path: Path, *words: str) -> str:
    with pytest.raises(DatastoreConfigError) as raised:
        _open(url, environ, tmp_path)
    message = str(raised.value)
    assert "\n" not in message
    for secret in SECRETS:
        assert secret not in message
    for word in words:
        assert word in message
    return message


def test_local_paths(tmp_path: Path) -> None:
    assert _open("", {}, tmp_path).root == tmp_path / "default"  # type: ignore[union-attr]
    store = _open(str(tmp_path / "v"), {}, tmp_path)
    assert isinstance(store, LocalDatastore) and store.root == tmp_path / "v"
    store = _open(f"file://{tmp_path}/w", {}, tmp_path)
    assert isinstance(store, LocalDatastore) and store.root == tmp_path / "w"
    _refused("file://host/x", {}, tmp_path, "absolute")


def test_object_store_urls(tmp_path: Path) -> None:
    store = _open("azure://backups/prod/vault", AZURE, tmp_path)
    assert isinstance(store, ObjectDatastore) and store.name == "azure://backups/prod/vault"
    store = _open("s3://my-bucket", AWS, tmp_path)
    assert isinstance(store, ObjectDatastore) and store.name == "s3://my-bucket"
    assert "wJalr" not in repr(store) and "wJalr" not in repr(store._s3)
    endpoint = {**AWS, "AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_REGION": "eu-west-1"}
    assert isinstance(_open("s3://my-bucket/p/", endpoint, tmp_path), ObjectDatastore)


def test_azurite_connection_string(tmp_path: Path) -> None:
    conn = (
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={SECRET};"
        "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
    )
    assert isinstance(
        _open("azure://c01", {"AZURE_STORAGE_CONNECTION_STRING": conn}, tmp_path), ObjectDatastore
    )
    dev = {"AZURE_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true"}
    assert isinstance(_open("azure://c01", dev, tmp_path), ObjectDatastore)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("gs://bucket", ["gs://"]),
        ("azure://", ["container"]),
        ("s3:///prefix", ["bucket"]),
        ("azure://Bad_Container", ["container name"]),
        ("s3://ab", ["bucket name"]),
        ("azure://c01/Prefix/UPPER", ["prefix"]),
        ("s3://bucket/a/../b", ["prefix"]),
        ("s3://user:hunter2@bucket", ["environment"]),
        ("s3://bucket?secret=hunter2", ["environment"]),
    ],
)
def test_bad_urls(url: str, words: list[str], tmp_path: Path) -> None:
    _refused(url, {**AWS, **AZURE}, tmp_path, *words)


@pytest.mark.parametrize(
    ("url", "environ", "variable"),
    [
        ("s3://bucket", {}, "AWS_ACCESS_KEY_ID"),
        ("s3://bucket", {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE"}, "AWS_SECRET_ACCESS_KEY"),
        ("s3://bucket", {**AWS, "AWS_ENDPOINT_URL": "ftp://hunter2@host"}, "AWS_ENDPOINT_URL"),
        ("azure://c01", {}, "AZURE_STORAGE_ACCOUNT_NAME"),
        ("azure://c01", {"AZURE_STORAGE_ACCOUNT_NAME": "acct"}, "AZURE_STORAGE_ACCOUNT_KEY"),
        ("azure://c01", {**AZURE, "AZURE_STORAGE_ACCOUNT_KEY": "hunter2!!"}, "AZURE_STORAGE_ACCOUNT_KEY"),
        ("azure://c01", {**AZURE, "AZURE_STORAGE_ENDPOINT": "hunter2"}, "AZURE_STORAGE_ENDPOINT"),
        (
            "azure://c01",
            {"AZURE_STORAGE_CONNECTION_STRING": f"AccountKey={SECRET}"},
            "AZURE_STORAGE_CONNECTION_STRING",
        ),
        (
            "azure://c01",
            {"AZURE_STORAGE_CONNECTION_STRING": "AccountName=a;AccountKey=hunter2!!"},
            "AZURE_STORAGE_CONNECTION_STRING",
        ),
    ],
)
def test_missing_or_bad_credentials_name_the_variable(
    url: str, environ: dict[str, str], variable: str, tmp_path: Path
) -> None:
    _refused(url, environ, tmp_path, variable)
