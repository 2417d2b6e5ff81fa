"""The dashboard in a real browser (headless Debian Chromium) against a real server: sign-in by a
one-time code, vault -> instance -> timeline with recovery points of a real pg_dump backup, a failed
backup appearing while the page is open, tenants kept apart; no console errors, nothing fetched
from anywhere but the server."""

from __future__ import annotations

import struct
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_protection import Protected, make_sample_database
from tests.operator.conftest import dashboard_url
from tests.support import API, Env, PostgresServer, Server, vault_body, wait_operation

OTHER_TENANT = "7a1e3c55-0000-4000-8000-00000000beef"


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_sign_in_by_code_then_vault_instance_and_timeline_of_a_real_backup(
    server: Server, client: httpx.Client, source_pg: PostgresServer, tab: Any, tmp_path: Path
) -> None:
    p = Protected(
        server, client, source_pg, make_sample_database(source_pg, customers=50, orders=50)
    ).create()
    assert p.put()["status"] == "Succeeded"
    first = p.wait_job(p.backup())
    second = p.wait_job(p.backup(tag="Weekly"))
    assert first["status"] == second["status"] == "Completed"
    api_points = {rp["name"]: rp["properties"] for rp in p.points()}
    assert len(api_points) == 2

    t = tab()
    page = t.page
    url = dashboard_url(server)
    page.goto(url)
    assert page.url == f"{server.base}/dashboard", page.url
    (cookie,) = [c for c in t.context.cookies() if c["name"].endswith("dpvault-session")]
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict", cookie

    # the code was for one sign-in only
    again = t.context.new_page()
    again.goto(url)
    assert "used already" in again.inner_text("main")
    again.close()

    page.click(f"tr[data-vault='{p.env.vault}'] a")
    page.wait_for_selector(f"tr[data-instance='{p.name}']")
    assert "ProtectionConfigured" in page.inner_text(f"tr[data-instance='{p.name}']")
    page.click(f"tr[data-instance='{p.name}'] a")
    page.wait_for_selector("svg.timeline")
    shown = page.eval_on_selector_all("table.points tr[data-point]", "rows => rows.map(r => r.dataset.point)")
    assert sorted(shown) == sorted(api_points)
    markers = page.eval_on_selector_all("svg.timeline circle[data-point]", "c => c.map(e => e.dataset.point)")
    assert sorted(markers) == sorted(api_points)
    for rp_id, props in api_points.items():
        row = page.inner_text(f"table.points tr[data-point='{rp_id}']")
        assert props["retentionTagName"] in row, row
    assert page.inner_text("#protection-state") == "ProtectionConfigured"
    assert "Completed" in page.inner_text("#last-backup")

    shot = tmp_path / "instance.png"
    page.screenshot(path=str(shot), full_page=True)
    width, height = png_size(shot)
    assert width == 1280 and height >= 400 and shot.stat().st_size > 10_000
    t.check_clean()


def test_a_failed_backup_appears_without_a_reload(
    server: Server, client: httpx.Client, source_pg: PostgresServer, tab: Any
) -> None:
    db = make_sample_database(source_pg, customers=10, orders=10)
    p = Protected(server, client, source_pg, db).create()
    assert p.put()["status"] == "Succeeded"
    t = tab()
    page = t.page
    page.goto(dashboard_url(server))
    page.goto(f"{server.base}/dashboard/subscriptions/{p.env.vault_path.split('/')[2]}/resourceGroups/{p.env.rg}"
              f"/vaults/{p.env.vault}/instances/{p.name}")  # fmt: skip
    page.wait_for_selector("#protection-state")
    page.evaluate("window.__notReloaded = true")
    server.set_secret(p.uri, source_pg.ado(db, password="not-the-password"))
    job_id = p.backup()
    row = page.wait_for_selector(f"tr.status-failed[data-job='{job_id}']", timeout=60_000)
    assert "UserErrorDatabaseAuthenticationFailed" in row.inner_text()
    assert "Recommended:" in row.inner_text()
    assert page.evaluate("window.__notReloaded") is True  # the row came in place, not by a reload
    assert p.job(job_id)["status"] == "Failed"
    t.check_clean()


def test_another_tenants_session_sees_nothing_of_this_tenant(
    server: Server, client: httpx.Client, tab: Any
) -> None:
    mine = Env(client).create()
    other_sub = str(uuid.uuid4())
    theirs_name = f"theirs-{uuid.uuid4().hex[:6]}"
    with server.client(server.token("--tenant", OTHER_TENANT)) as other:
        r = other.put(
            f"/subscriptions/{other_sub}/resourceGroups/rg-b/providers/Microsoft.DataProtection/backupVaults/{theirs_name}?api-version={API}",
            json=vault_body(),
        )
        assert r.status_code == 201, r.text
        wait_operation(other, r.headers["Azure-AsyncOperation"])
    t = tab()
    page = t.page
    page.goto(dashboard_url(server, "--tenant", OTHER_TENANT))
    text = page.inner_text("main")
    assert theirs_name in text
    assert mine.vault not in text and mine.rg not in text
    assert mine.vault not in page.content()
    t.check_clean()
    # a direct link to this tenant's vault is answered as if it did not exist (the one console error:
    # the browser reports the 404 of the page itself)
    response = page.goto(
        f"{server.base}/dashboard/subscriptions/{mine.vault_path.split('/')[2]}/resourceGroups/{mine.rg}/vaults/{mine.vault}"
    )
    assert response is not None and response.status == 404
    assert mine.vault not in page.inner_text("main")
    assert len(t.errors) == 1 and "404" in t.errors[0], t.errors


def test_laptop_and_phone_screens(server: Server, client: httpx.Client, tab: Any, tmp_path: Path) -> None:
    env = Env(client).create()
    env.create_instance("bi-phone")
    for name, viewport in (
        ("laptop", {"width": 1366, "height": 768}),
        ("phone", {"width": 390, "height": 844}),
    ):
        t = tab(viewport)
        t.page.goto(dashboard_url(server))
        t.page.goto(
            f"{server.base}/dashboard/subscriptions/{env.vault_path.split('/')[2]}/resourceGroups/{env.rg}/vaults/{env.vault}"
        )
        t.page.wait_for_selector("tr[data-instance='bi-phone']")
        overflow = t.page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{name}: the page is {overflow}px wider than the screen"
        shot = tmp_path / f"{name}.png"
        t.page.screenshot(path=str(shot), full_page=True)
        assert png_size(shot)[0] == viewport["width"]
        t.check_clean()


def test_sign_in_and_sign_out_over_http(server: Server) -> None:
    """Without a browser: the cookie's flags, a bad code, and a sign-out that needs the session's CSRF token."""
    with httpx.Client(base_url=server.base, verify=server.ssl_context(), follow_redirects=False) as anonymous:
        assert anonymous.get("/dashboard").status_code == 401
        assert anonymous.get("/dashboard/login?code=not-a-code-of-this-server-000000").status_code == 401
        r = anonymous.get(dashboard_url(server).removeprefix(server.base))
        assert r.status_code == 303 and r.headers["location"] == "/dashboard"
        cookie = r.headers["set-cookie"]
        for flag in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/"):
            assert flag in cookie, cookie
        assert "script-src 'self'" in anonymous.get("/dashboard").headers["content-security-policy"]
        page = anonymous.get("/dashboard")
        assert page.status_code == 200 and "Sign out" in page.text
        # the session cookie is not a bearer token
        session = cookie.split(";", 1)[0].split("=", 1)[1]
        api = anonymous.get(
            "/subscriptions?api-version=2022-12-01", headers={"Authorization": f"Bearer {session}"}
        )
        assert api.status_code == 401, api.text
        refused = anonymous.post("/dashboard/logout", data={"csrf": "wrong"})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "InvalidCsrfToken"
        cross = anonymous.post(
            "/dashboard/logout", data={"csrf": "x"}, headers={"Origin": "https://evil.example"}
        )
        assert cross.status_code == 403 and cross.json()["error"]["code"] == "CrossOriginRequestRefused"
        csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        out = anonymous.post("/dashboard/logout", data={"csrf": csrf}, headers={"Origin": server.base})
        assert out.status_code == 303 and "Max-Age=0" in out.headers["set-cookie"]


@pytest.mark.parametrize("name", ["dashboard.css", "dashboard.js", "favicon.svg"])
def test_assets_ship_in_the_package(server: Server, name: str) -> None:
    import importlib.resources

    r = httpx.get(f"{server.base}/dashboard/static/{name}", verify=server.ssl_context())
    assert r.status_code == 200
    assert r.content == (importlib.resources.files("dpvault.dashboard") / "static" / name).read_bytes()
    assert (
        httpx.get(f"{server.base}/dashboard/static/..%2Fsignin.py", verify=server.ssl_context()).status_code
        == 404
    )


def test_dashboard_url_refuses_a_data_dir_that_is_no_servers(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "dpvault", "dashboard-url", "--data-dir", str(tmp_path / "typo")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "not the data directory of a dpvault server" in out.stderr
    assert not (tmp_path / "typo").exists()
