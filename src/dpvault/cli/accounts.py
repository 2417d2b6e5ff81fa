"""``dpvault clients`` (OAuth clients of the built-in issuer) and ``dpvault subscriptions`` (which tenant
owns which subscription)."""

from __future__ import annotations

from typing import Annotated

import typer

from dpvault.cli.common import DEFAULT_DATA_DIR, DatabaseUrl, DataDir, app, err, with_store
from dpvault.settings import Settings

clients_app = typer.Typer(
    no_args_is_help=True, help="OAuth clients of the built-in issuer (client credentials)."
)
app.add_typer(clients_app, name="clients")
subscriptions_app = typer.Typer(no_args_is_help=True, help="Subscriptions and the tenant that owns each.")
app.add_typer(subscriptions_app, name="subscriptions")


@clients_app.command("add")
def clients_add(
    name: Annotated[str, typer.Argument(help="A name for the client (shown in systemData and jobs).")],
    tenant: Annotated[str, typer.Option(help="The tenant its tokens are for (tid).")] = Settings.tenant_id,
    subscription: Annotated[
        list[str] | None,
        typer.Option(
            "--subscription",
            help="A subscription to register for the client's tenant (repeat), so that `az login` "
            "with this client finds it without `dpvault subscriptions add`.",
        ),
    ] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    database_url: DatabaseUrl = None,
) -> None:
    """Register a client; prints its id and secret (the secret is shown only this once)."""
    import time

    from dpvault import errors
    from dpvault.arm import ids
    from dpvault.identity.clients import ClientRegistry

    subscriptions = [s.lower() for s in subscription or []]
    for sub in subscriptions:
        try:
            ids.check_subscription(sub)
        except errors.ArmError as exc:
            raise typer.BadParameter(exc.message, param_hint="--subscription") from None

    async def work(store):  # type: ignore[no-untyped-def]
        # Subscriptions first: one owned by another tenant refuses the whole command, no client made.
        async def claim(tx):  # type: ignore[no-untyped-def]
            rows = [await tx.claim_subscription(sub, tenant, now=time.time()) for sub in subscriptions]
            taken = [r for r in rows if r["tenant"].lower() != tenant.lower()]
            if taken:
                raise _TakenError(taken[0])
            return rows

        rows = await store.transact(claim)
        client, secret = await ClientRegistry(store).add(name, tenant, now=time.time())
        return client, secret, rows

    try:
        client, secret, rows = with_store(data_dir, database_url, work)
    except _TakenError as exc:
        err.print(
            f"subscription {exc.row['id']} already belongs to tenant {exc.row['tenant']}", highlight=False
        )
        raise typer.Exit(1) from None
    typer.echo(f"client_id={client.client_id}")
    typer.echo(f"client_secret={secret}")
    typer.echo(f"tenant_id={client.tenant}")
    for row in rows:
        typer.echo(f"subscription_id={row['id']}")


class _TakenError(Exception):
    """A subscription given to ``clients add`` belongs to another tenant."""

    def __init__(self, row: dict) -> None:  # type: ignore[type-arg]
        super().__init__(row["id"])
        self.row = row


@clients_app.command("list")
def clients_list(data_dir: DataDir = DEFAULT_DATA_DIR, database_url: DatabaseUrl = None) -> None:
    """List registered clients (never their secrets)."""
    from dpvault.identity.clients import ClientRegistry

    for client in with_store(data_dir, database_url, lambda store: ClientRegistry(store).list()):
        typer.echo(f"{client.client_id}  tenant={client.tenant}  {client.name}")


@clients_app.command("delete")
def clients_delete(
    client_id: str, data_dir: DataDir = DEFAULT_DATA_DIR, database_url: DatabaseUrl = None
) -> None:
    """Remove a client: its secret stops working (tokens already issued last until they expire)."""
    from dpvault.identity.clients import ClientRegistry

    if not with_store(data_dir, database_url, lambda store: ClientRegistry(store).delete(client_id)):
        err.print(f"no client {client_id}", highlight=False)
        raise typer.Exit(1)


@subscriptions_app.command("add")
def subscriptions_add(
    subscription_id: str,
    tenant: Annotated[str, typer.Option(help="The tenant that owns it.")],
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    data_dir: DataDir = DEFAULT_DATA_DIR,
    database_url: DatabaseUrl = None,
) -> None:
    """Register a subscription for a tenant (before anyone uses it)."""
    import time

    from dpvault import errors
    from dpvault.arm import ids

    try:
        ids.check_subscription(subscription_id)
    except errors.ArmError as exc:
        raise typer.BadParameter(exc.message) from None

    async def work(store):  # type: ignore[no-untyped-def]
        return await store.transact(
            lambda tx: tx.claim_subscription(
                subscription_id.lower(), tenant, now=time.time(), display_name=name
            )
        )

    row = with_store(data_dir, database_url, work)
    if row["tenant"].lower() != tenant.lower():
        err.print(
            f"subscription {subscription_id} already belongs to tenant {row['tenant']}", highlight=False
        )
        raise typer.Exit(1)
    typer.echo(f"{row['id']}  tenant={row['tenant']}  {row['display_name']}")


@subscriptions_app.command("list")
def subscriptions_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's.")] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    database_url: DatabaseUrl = None,
) -> None:
    """List subscriptions and their tenants."""

    async def work(store):  # type: ignore[no-untyped-def]
        async with store.read() as tx:
            if tenant:
                return await tx.subscriptions_of(tenant)
            return [r for t in await tx.tenants() for r in await tx.subscriptions_of(t)]

    for row in with_store(data_dir, database_url, work):
        typer.echo(f"{row['id']}  tenant={row['tenant']}  {row['display_name']}")
