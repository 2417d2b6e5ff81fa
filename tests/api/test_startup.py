"""What an operator meets starting dpvault: every start-up mistake is one line on stderr and a
non-zero exit (never "listening" first, never a traceback); private files; the banner; --help at 80
columns; `dpvault token` and `dashboard-url` with a wrong data dir; `secrets set` and `verify`
refusing what cannot be right."""

from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from dpvault.engines.postgres.tools import ToolsError, find_tools
from tests.support import API, SUB, Env, Server, wait_operation

DPVAULT = [sys.executable, "-m", "dpvault"]


def run(
    *args: str, cwd: Path | None = None, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DPVAULT, *args], capture_output=True, text=True, cwd=cwd, input=stdin, timeout=timeout
    )


def one_line_error(done: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert done.returncode == code, (done.returncode, done.stderr)
    assert len(lines) == 1, f"expected one line, got:\n{done.stderr}"
    assert lines[0].startswith("dpvault: "), lines[0]
    assert "Traceback" not in done.stderr and "listening" not in done.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run("serve", "--data-dir", str(tmp_path / "data"), *args)


@pytest.mark.parametrize("port", ["99999", "-1", "65536"])
def test_a_port_out_of_range_is_refused(tmp_path: Path, port: str) -> None:
    one_line_error(serve(tmp_path, "--port", port), 2, f"--port {port}", "1-65535")


def test_a_busy_port_fails_before_the_banner(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        one_line_error(serve(tmp_path, "--port", str(port)), 1, f"127.0.0.1:{port}", "in use")


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("mysql://u:hunter2@127.0.0.1/x", ["unsupported database URL scheme"]),
        ("not a url", ["cannot open the state database"]),
        ("postgresql://dpvault:hunter2@127.0.0.1:1/dpvault", ["cannot open the state database", "***"]),
        ("sqlite:////nonexistent-dir/sub/state.db", ["cannot open the state database"]),
    ],
)
def test_a_bad_database_url_is_one_line_without_its_password(
    tmp_path: Path, url: str, words: list[str]
) -> None:
    line = one_line_error(serve(tmp_path, "--port", "0", "--database-url", url), 1, *words)
    assert "hunter2" not in line


def _env(**values: str) -> dict[str, str]:
    """The environment without any object store's variables, plus ``values``."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_STORAGE_", "AWS_"))}
    return {**keep, **values}


def run_env(environ: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DPVAULT, *args], capture_output=True, text=True, env=environ, timeout=120)


@pytest.mark.parametrize(
    ("store", "environ", "words"),
    [
        ("ftp://host/vault", {}, ["unknown vault store scheme"]),
        ("azure://", {}, ["--vault-store"]),
        ("azure://backups", {}, ["AZURE_STORAGE_CONNECTION_STRING"]),
        ("azure://backups", {"AZURE_STORAGE_ACCOUNT_NAME": "acct"}, ["AZURE_STORAGE_ACCOUNT_KEY"]),
        ("s3://bucket", {}, ["AWS_ACCESS_KEY_ID"]),
        (
            "s3://Bucket_Name",
            {"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "s3cr3t-value"},
            ["--vault-store"],
        ),
        ("s3://user:pw@bucket", {}, ["--vault-store"]),
    ],
)
def test_a_vault_store_that_cannot_work_is_one_line_naming_what_to_fix(
    tmp_path: Path, store: str, environ: dict[str, str], words: list[str]
) -> None:
    for command in ("serve", "worker"):
        done = run_env(_env(**environ), command, "--data-dir", str(tmp_path / "data"), "--vault-store", store)
        line = one_line_error(done, 2, *words)
        assert "s3cr3t-value" not in done.stderr and "pw@" not in line


def test_an_object_store_that_is_down_or_refuses_is_one_line_before_serving(
    tmp_path: Path, azurite: Any, moto_s3: Any
) -> None:
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]  # bound, never listening: nothing answers
    try:
        environ = _env(
            AWS_ACCESS_KEY_ID="a", AWS_SECRET_ACCESS_KEY="b", AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}"
        )
        done = run_env(environ, "serve", "--data-dir", str(tmp_path / "d1"), "--vault-store", "s3://bucket")
        one_line_error(done, 1, "s3://bucket", "cannot be used")
    finally:
        dead.close()
    # a container that does not exist, and a wrong account key, in a store that answers
    good = azurite.environ()
    done = run_env(
        _env(**good),
        "serve",
        "--data-dir",
        str(tmp_path / "d2"),
        "--vault-store",
        "azure://no-such-container",
    )
    one_line_error(done, 1, "azure://no-such-container", "cannot be used")
    container = azurite.make_container("exists")
    wrong = good["AZURE_STORAGE_CONNECTION_STRING"].replace("AccountKey=", "AccountKey=AAAA")
    done = run_env(_env(AZURE_STORAGE_CONNECTION_STRING=wrong), "worker", "--data-dir", str(tmp_path / "d3"),
                   "--vault-store", f"azure://{container}")  # fmt: skip
    line = one_line_error(done, 1, f"azure://{container}", "cannot be used")
    assert "AccountKey" not in line


def test_a_data_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    one_line_error(run("serve", "--port", "0", "--data-dir", str(afile)), 2, "--data-dir", "not a directory")


@pytest.mark.parametrize("kind", ["missing", "broken-wrapper"])
def test_a_pg_dump_that_does_not_work_is_an_error_not_a_fallback(tmp_path: Path, kind: str) -> None:
    if kind == "missing":
        pg_dump = tmp_path / "nonexistent" / "pg_dump"
    else:  # Debian's pg_wrapper with no client installed answers like this
        pg_dump = _wrapper(tmp_path / "bin")
    one_line_error(serve(tmp_path, "--port", "0", "--pg-dump", str(pg_dump)), 2, f"--pg-dump {pg_dump}")


def _wrapper(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("pg_dump", "pg_restore"):
        script = folder / name
        script.write_text(
            '#!/bin/sh\necho "Error: You must install at least one postgresql-client-<version> package" >&2\nexit 1\n'
        )
        script.chmod(0o755)
    return folder / "pg_dump"


def test_a_debian_pg_dump_wrapper_without_clients_is_passed_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No /usr/lib/postgresql/N/bin and only a wrapper that cannot run on PATH: no pg_dump (backups
    then say UserErrorPgDumpNotFound), not a crash; configured explicitly, it is an error."""
    wrapper = _wrapper(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{wrapper.parent}:/usr/bin:/bin")
    assert find_tools(search=tmp_path / "no-debian-installs") is None
    with pytest.raises(ToolsError, match="--version failed: Error: You must install"):
        find_tools(str(wrapper))
    assert find_tools() is not None  # this machine's real one


def test_port_zero_prints_the_port_it_bound_and_the_banner_names_the_command(tmp_path: Path) -> None:
    venv_bin = Path(sys.executable).parent
    script = venv_bin / "dpvault"
    cwd = venv_bin.parent.parent  # where .venv lives: the banner shows .venv/bin/dpvault
    proc = subprocess.Popen(
        [str(script), "serve", "--port", "0", "--data-dir", str(tmp_path / "data")], cwd=cwd,
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        lines = [proc.stderr.readline() for _ in range(5)]
    finally:
        proc.terminate()
        proc.wait(20)
    banner = "".join(lines)
    port = int(re.search(r"listening on https://127\.0\.0\.1:(\d+)", banner).group(1))  # type: ignore[union-attr]
    assert port != 0, banner
    shown = str(script.relative_to(cwd))
    assert f"Bearer token:   {shown} token --data-dir " in banner, banner
    assert f"Dashboard:      https://127.0.0.1:{port}/dashboard/login?code=" in banner, banner
    assert f"{shown} dashboard-url" in banner


def test_data_dir_files_are_private(server: Server) -> None:
    data = server.data_dir
    assert stat.S_IMODE(data.stat().st_mode) & 0o077 == 0
    for path in [
        data / "state.db",
        *sorted((data / "identity").iterdir()),
        *sorted((data / "tls").glob("*key*")),
    ]:
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, f"{path}: {oct(path.stat().st_mode)}"
    for folder in (data / "identity", data / "tls", data / "vault"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def test_a_world_writable_data_dir_is_used_with_a_warning(
    make_server: Callable[..., Server], tmp_path: Path
) -> None:
    data = tmp_path / "shared"
    data.mkdir()
    data.chmod(0o777)
    server = make_server(data_dir=data)
    assert re.search(
        r"dpvault: warning: the data dir .* is writable by everyone \(mode 0777\)", server.log()
    ), server.log()
    assert stat.S_IMODE((data / "identity" / "signing-key.pem").stat().st_mode) == 0o600


def test_files_an_older_version_made_readable_become_private(
    make_server: Callable[..., Server], tmp_path: Path
) -> None:
    data = tmp_path / "old"
    (data / "identity").mkdir(parents=True)
    (data / "state.db").touch(mode=0o644)
    (data / "state.db").chmod(0o644)
    make_server(data_dir=data)
    assert stat.S_IMODE((data / "state.db").stat().st_mode) == 0o600


def test_help_is_readable_at_80_columns() -> None:
    env = {**os.environ, "COLUMNS": "80", "TERM": "dumb"}
    for command in (["serve", "--help"], ["--help"], ["secrets", "set", "--help"], ["worker", "--help"]):
        done = subprocess.run([*DPVAULT, *command], capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr
        for line in done.stdout.splitlines():
            assert len(line) <= 80, f"{command}: {line!r}"
        assert "<bool>" not in done.stdout and "…" not in done.stdout
    serve_help = subprocess.run([*DPVAULT, "serve", "--help"], capture_output=True, text=True, env=env).stdout
    assert "enforce_https=False" in serve_help and "--alert-webhook" in serve_help


def test_token_with_a_data_dir_of_no_server_makes_no_key(tmp_path: Path) -> None:
    typo = tmp_path / ".dpvualt"
    one_line_error(run("token", "--data-dir", str(typo)), 2, "no signing key", "--data-dir")
    assert not typo.exists()


def test_a_token_signed_by_another_data_dirs_key_says_so(server: Server, tmp_path: Path) -> None:
    other = Server(tmp_path / "other")
    (other.data_dir / "identity").mkdir(parents=True)
    from dpvault.identity import keys

    keys.load_or_create(other.data_dir / "identity")  # another server's key
    r = httpx.get(
        f"{server.base}/subscriptions/{SUB}/resourcegroups?api-version=2021-04-01", verify=server.ssl_context(),
        headers={"Authorization": f"Bearer {other.token()}"},
    )  # fmt: skip
    assert r.status_code == 401
    error = r.json()["error"]
    assert error["code"] == "InvalidAuthenticationToken"
    assert (
        "signed by a key this server does not have" in error["message"] and "--data-dir" in error["message"]
    )


class TestSecretsSet:
    def test_a_uri_that_is_no_key_vault_secret_uri_is_refused(self, server: Server) -> None:
        for uri in ("notauri", "http://kv1.vault.azure.net/secrets/pg", "https://kv1.vault.azure.net/keys/pg",
                    "https://kv1.vault.azure.net/secrets/bad_name", "https://example.com/secrets/pg"):  # fmt: skip
            done = run(
                "secrets", "set", uri, "--data-dir", str(server.data_dir), stdin="host=x dbname=y", timeout=30
            )
            one_line_error(done, 2, "not a Key Vault secret URI", "--force")

    def test_a_value_that_is_no_connection_string_is_refused(self, server: Server) -> None:
        done = run("secrets", "set", "https://kvcheck.vault.azure.net/secrets/pg", "--data-dir", str(server.data_dir),
                   stdin="just some text")  # fmt: skip
        one_line_error(done, 2, "not a usable connection string", "--force")

    def test_force_stores_it_anyway(self, server: Server) -> None:
        done = run("secrets", "set", "https://example.com/secrets/any_thing", "--force", "--data-dir", str(server.data_dir),
                   stdin="anything at all")  # fmt: skip
        assert done.returncode == 0, done.stderr
        listed = run("secrets", "list", "--data-dir", str(server.data_dir)).stdout
        assert "https://example.com/secrets/any_thing" in listed

    def test_a_good_one_is_stored(self, server: Server) -> None:
        done = run("secrets", "set", "https://kvgood.vault.azure.net/secrets/pg-1", "--data-dir", str(server.data_dir),
                   stdin="Server=db;Database=d;Port=5432;User Id=u;Password=p;Ssl Mode=Require;")  # fmt: skip
        assert done.returncode == 0, done.stderr


class TestVerify:
    def test_an_unknown_vault_or_instance_exits_2(self, server: Server, env: Env) -> None:
        data = ["--data-dir", str(server.data_dir)]
        if server.database_url:
            data += ["--database-url", server.database_url]
        one_line_error(run("verify", "--vault", "nosuch", *data), 2, "no backup vault is named 'nosuch'")
        one_line_error(
            run("verify", "--vault", env.vault, "--instance", "nosuch", *data), 2, "no backup instance"
        )
        env.create_instance("bi-verify")
        done = run("verify", "--vault", env.vault.upper(), "--instance", "bi-verify", *data)
        assert done.returncode == 0 and "0 recovery points checked" in done.stdout, done.stdout + done.stderr


def test_sub_second_job_durations_are_iso_8601(env: Env) -> None:
    from dpvault.resources.jobs.render import _duration

    assert [_duration(s) for s in (0, 0.29, 61, 131.9724387, 3661.25)] == [
        "PT0S", "PT0.29S", "PT1M1S", "PT2M11.9724387S", "PT1H1M1.25S",
    ]  # fmt: skip
    body = {"backupInstance": {"objectType": "BackupInstance", "dataSourceInfo": {
        "objectType": "Datasource", "resourceID": "/x/databases/d", "resourceName": "d",
        "datasourceType": "Microsoft.DBforPostgreSQL/servers/databases"},
        "policyInfo": {"policyId": env.policy_id},
        "datasourceAuthCredentials": {"objectType": "SecretStoreBasedAuthCredentials",
                                      "secretStoreResource": {"uri": "https://kvnone.vault.azure.net/secrets/none", "secretStoreType": "AzureKeyVault"}}}}  # fmt: skip
    r = env.client.post(f"{env.vault_path}/validateForBackup?api-version={API}", json=body)
    assert r.status_code == 202, r.text
    wait_operation(env.client, r.headers["Azure-AsyncOperation"])
    (job,) = env.client.get(f"{env.vault_path}/backupJobs?api-version={API}").json()["value"]
    assert re.fullmatch(r"PT(\d+H)?(\d+M)?\d+(\.\d{1,7})?S", job["properties"]["duration"]), job[
        "properties"
    ]["duration"]


def test_serve_port_in_use_by_a_running_dpvault(server: Server, tmp_path: Path) -> None:
    """The common case: a second `serve` on the first one's port."""
    one_line_error(serve(tmp_path, "--port", str(server.port)), 1, "in use")
