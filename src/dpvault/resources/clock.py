"""dpvault's own admin routes for the controllable clock (not part of Azure's API; authenticated
like every route): ``GET /dpvault/clock`` and ``POST /dpvault/clock/advance``."""

from __future__ import annotations

from datetime import UTC

from dpvault import errors
from dpvault.arm.http import Call, Reply
from dpvault.arm.schema import decode
from dpvault.clock import from_timestamp
from dpvault.model.policies.schedule import ScheduleError, parse_datetime
from dpvault.model.schema import Base
from dpvault.protection.timekeeper import BUDGET, Timekeeper
from dpvault.services import Services

MAX_ADVANCE = 20 * 366 * 24 * 3600.0


class AdvanceRequest(Base):
    seconds: float | None = None
    to: str | None = None
    # How long (real seconds) this request may work before answering complete=false.
    maxSeconds: float | None = None  # noqa: N815 - the wire name


class ClockRoutes:
    def __init__(self, svc: Services, timekeeper: Timekeeper | None) -> None:
        self.svc = svc
        self.timekeeper = timekeeper

    async def get(self, call: Call) -> Reply:
        return Reply.json(
            200,
            {"mode": "manual" if self.svc.clock.manual else "real", "now": from_timestamp(self.svc.now())},
        )

    async def advance(self, call: Call) -> Reply:
        # The clock is the whole server's: only the operator's tenant (the one `dpvault token` signs
        # for) may move it, not any tenant that happens to use the server.
        assert call.principal is not None
        if call.principal.tenant.lower() != self.svc.settings.tenant_id.lower():
            raise errors.ArmError(
                403,
                "AuthorizationFailed",
                "Only the server's own tenant may advance the clock (it moves time for every tenant).",
            )
        if self.timekeeper is None:
            raise errors.conflict(
                "The clock is the real clock; start the server with --clock manual to control it.",
                code="ClockNotManual",
            )
        request = decode(await call.json_body() or b"", AdvanceRequest)
        now = self.svc.now()
        if (request.seconds is None) == (request.to is None):
            raise errors.bad_request("Give exactly one of 'seconds' or 'to'.", target="seconds")
        if request.seconds is not None:
            if not 0 <= request.seconds <= MAX_ADVANCE:
                raise errors.bad_request(
                    f"'seconds' must be between 0 and {MAX_ADVANCE:.0f}.", target="seconds"
                )
            target = now + request.seconds
        else:
            try:
                moment = parse_datetime(request.to or "")
            except ScheduleError as exc:
                raise errors.bad_request(str(exc), target="to") from None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            target = moment.timestamp()
            if not now <= target <= now + MAX_ADVANCE:
                raise errors.bad_request(
                    "'to' must not be in the past (the clock never runs backwards).", target="to"
                )
        budget = BUDGET
        if request.maxSeconds is not None:
            if not 0 < request.maxSeconds <= BUDGET:
                raise errors.bad_request(
                    f"'maxSeconds' must be more than 0 and at most {BUDGET:.0f}.", target="maxSeconds"
                )
            budget = request.maxSeconds
        result = await self.timekeeper.advance(target, budget)
        return Reply.json(
            200,
            {
                "mode": "manual",
                "now": from_timestamp(result.now),
                "backups": result.backups,
                "expired": result.expired,
                "purged": result.purged,  # soft-deleted instances and vaults whose retention ended
                # false: the request's time budget ran out at "now"; advance again to go on.
                "complete": result.complete,
            },
        )
