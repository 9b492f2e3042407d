"""The worker body: take one row to a final outcome, for any mutating action.

One screen of logic: read the VPC's links once, settle what is already done, reserve quota
(attach), send, classify the answer, then try again, read back, or settle. The action
(``engine/actions.py``: attach, detach) says what to send and what "done" looks like;
decisions come from the pure ``AttemptPolicy``; this module only sequences the I/O.

Safety rules it keeps:

* a request is never re-sent after an ambiguous answer (5xx, timeout, dropped connection)
  until the link has been read back and found not done;
* a row whose end state already holds when its VPC is first read (linked, for attach; not
  linked, for detach) is reported as the action's no-op status and never sent, which is
  what makes re-runs safe;
* a VPC's quota is held by the ledger (attach): ``linked + in flight < quota`` or the row
  is skipped;
* once the run is interrupted (``RunControl.sending_closed``) nothing more is sent: a row
  whose next request had not left is ``skipped`` ("not attempted" or "not sent again"),
  and only a row whose request left without an answer that settles it is reported
  interrupted in flight, the one case a resume must read back;
* a row is in the resume journal before its first request can leave, and not before it
  passed the rate gate: waiting for a token sends nothing.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from bulk_attach.core.attempts import AttemptPolicy, GiveUp, Reconcile, TryAgain
from bulk_attach.core.catalog import ErrorClass, LocalCode
from bulk_attach.core.outcomes import Key, RowResult, Status
from bulk_attach.core.quotas import QuotaLedger
from bulk_attach.core.rows import Row
from bulk_attach.engine.actions import ATTACH, Action, MutatingApi
from bulk_attach.engine.control import (
    INTERRUPTED_IN_FLIGHT,
    RunControl,
    SendingClosed,
)
from bulk_attach.engine.events import Listener, RowRetrying, Throttled
from bulk_attach.engine.gates import RateGate
from bulk_attach.engine.reads import ReadOnly
from bulk_attach.engine.vpcs import LinkBook
from bulk_attach.errors import ApiError, EcsError, Refused

__all__ = ["Worker", "WorkerApi", "utc_now"]

T = TypeVar("T")


class _Link(Protocol):
    @property
    def instance_id(self) -> str: ...
    @property
    def vpc_id(self) -> str: ...


class WorkerApi(MutatingApi, Protocol):
    """The slice of ``EcsClient`` the worker uses (a fake can stand in for it)."""

    async def describe_classic_link_instances(
        self, region: str, *, vpc_id: str | None = None, instance_ids: Sequence[str] = ()
    ) -> Sequence[_Link]: ...


class _Stopping(Exception):
    """The run stopped while a row waited to read its VPC's links."""


@dataclass(slots=True)
class _Tries:
    """One row's requests so far."""

    sent: int = 0
    throttled: int = 0  # of them throttled: they do not count as tries
    refused_since: float | None = None  # when the row's current run of throttles began
    last_throttle: EcsError | None = None

    @property
    def counted(self) -> int:
        return self.sent - self.throttled


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Worker:
    """Settles rows one at a time for one action; many pool workers share one instance."""

    def __init__(
        self,
        api: WorkerApi,
        gate: RateGate,
        ledger: QuotaLedger,
        policy: AttemptPolicy,
        control: RunControl,
        *,
        emit: Listener,
        rand: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        now: Callable[[], str] = utc_now,
        journal: Callable[[Row], None] | None = None,
        in_doubt: Collection[Key] = (),
        action: Action = ATTACH,
        unique_instances: bool = False,
    ) -> None:
        self.action = action
        # Each instance has at most one row to run (a validated input file): a row's own
        # link need not be remembered for a later row of it, and a million remembered IDs
        # would be the run's largest holding.
        self._remember_links = not unique_instances
        self._api = api
        self._gate = gate
        self._ledger = ledger
        self._policy = policy
        self._control = control
        self._emit = emit
        self._rand = rand
        self._now = now
        # Called before a row's first request leaves (the resume journal).
        self._journal = journal
        # The gate is where a request last waits before it leaves, so it is where an
        # interrupted run stops it; backoffs end early for the same reason.
        gate.close_with(control)

        async def pause(delay: float) -> None:
            await control.unless_closed(sleep(delay))

        self._sleep: Callable[[float], Awaitable[None]] = pause
        # Rows whose request left and has no answer yet that settles whether it ran.
        self._unanswered: set[Key] = set()
        # Rows a previous run had sent but never settled (it died with them in flight).
        self._in_doubt = in_doubt
        # Describe calls: their own retries, and the verdict on a wrong endpoint.
        self._reads = ReadOnly(gate, policy, control, emit=emit, rand=rand, sleep=sleep)
        self.links = LinkBook(self._read_vpc_links, check=self._unless_stopping)

    # --- the worker body ---------------------------------------------------------------

    async def settle(self, row: Row) -> RowResult:
        started = self._now()
        try:
            await self.links.ensure(row.region_id, row.vpc_id)
        except (_Stopping, SendingClosed):
            return self.skipped(row, self._control.skip_message(), started=started)
        except EcsError as error:
            return self._failed(row, error, 0, started, "could not read the VPC's links: ")
        known = self._without_sending(row, started)
        if known is not None:
            return known
        # From here a quota reservation is ours: _send commits it or releases it, even when
        # the worker is cancelled mid-call.
        return await self._send(row, started)

    def _without_sending(self, row: Row, started: str) -> RowResult | None:
        """The row's outcome when nothing needs sending; None after reserving quota for it."""
        action = self.action
        if action.is_done(self.links.is_linked(row.vpc_id, row.instance_id)):
            if row.key in self._in_doubt:
                return self._result(
                    row,
                    action.success,
                    started,
                    message=f"sent by an interrupted run; confirmed {action.done_word} "
                    "by read-back",
                )
            return self._result(row, action.no_op, started, message=action.no_op_message)
        if self._control.stopping:
            return self.skipped(row, self._control.skip_message(), started=started)
        if action.uses_quota and not self._ledger.try_reserve(row.vpc_id):
            return self._result(
                row,
                Status.SKIPPED,
                started,
                error_code=LocalCode.QUOTA_EXCEEDED,
                message=(
                    f"{row.vpc_id} has no room under its quota ({self._ledger.linked(row.vpc_id)}"
                    f"/{self._ledger.quota_of(row.vpc_id)} linked); not sent"
                ),
            )
        return None

    async def _send(self, row: Row, started: str) -> RowResult:
        action = self.action
        tries = _Tries()
        settled = False
        gate = self._gate
        try:
            while True:
                try:
                    async with gate.admitted(row.region_id, action.api_action):
                        # Admitted: nothing is awaited from here until the bytes leave.
                        if tries.sent == 0 and self._journal is not None:
                            self._journal(row)
                        tries.sent += 1
                        self._unanswered.add(row.key)
                        request_id = await action.send(
                            self._api, row.region_id, row.instance_id, row.vpc_id
                        )
                except Refused as refused:  # not sent: the service refuses everything
                    return self._not_sent(row, refused, tries, started)
                except EcsError as error:
                    error_class = action.error_class(error)
                    refused_for = self._feedback(row, tries, error, error_class)
                    decision = self._policy.decide(
                        tries.counted,
                        error_class,
                        error.retry_after,
                        self._rand(),
                        refused_for=refused_for,
                    )
                    if isinstance(decision, Reconcile):
                        outcome = await self._reconcile(row, error, tries.sent, started)
                        self._unanswered.discard(row.key)  # read back: settled either way
                        if outcome is not None:
                            settled = outcome.status is action.success
                            return outcome
                        decision = self._policy.after_reconcile(tries.counted, self._rand())
                    if isinstance(decision, TryAgain):
                        self._note_retry(row, error, decision.delay, tries.sent)
                        await self._sleep(decision.delay)
                        continue
                    abort = not isinstance(decision, GiveUp)
                    return self._give_up(row, error, tries.sent, started, abort=abort)
                gate.on_answer(row.region_id)
                self._unanswered.discard(row.key)
                self._done(row)
                settled = True
                return self._result(
                    row, action.success, started, request_id=request_id, attempts=tries.sent
                )
        except SendingClosed:
            return self._interrupted(row, started, tries.sent)
        finally:
            if not settled and action.uses_quota:
                self._ledger.release(row.vpc_id)

    def _feedback(self, row: Row, tries: _Tries, error: EcsError, error_class: ErrorClass) -> float:
        """What an error answer tells the gate and the row's tries; returns how long the
        service has accepted nothing like it (throttled answers only, else 0)."""
        if error_class is not ErrorClass.AMBIGUOUS:
            self._unanswered.discard(row.key)  # the service says it did not run
        if error_class is ErrorClass.THROTTLED:
            tries.throttled += 1
            tries.last_throttle = error
            tries.refused_since, refused_for = self._refused(row, tries.refused_since)
            return refused_for
        tries.refused_since = None
        self._answered(row, error)
        return 0.0

    def _not_sent(self, row: Row, refused: Refused, tries: _Tries, started: str) -> RowResult:
        """The gate gave the row up unsent: the service refused everything for too long.
        A row the service throttled keeps the service's own last answer."""
        last = tries.last_throttle
        if last is None:
            return self._failed(row, refused, tries.sent, started)
        return self._failed(row, last, tries.sent, started, f"{refused.message}; the last answer: ")

    def _refused(self, row: Row, since: float | None) -> tuple[float, float]:
        """A throttled answer: slow the gate down; returns when this row's throttles began
        and how long the service has since accepted nothing like it."""
        self._slow_down(row.region_id)
        now = self._gate.now()
        since = now if since is None else since
        accepted = self._gate.last_accepted(row.region_id)
        return since, now - (since if accepted is None else max(since, accepted))

    def _answered(self, row: Row, error: EcsError) -> None:
        """An error answer from the service itself counts as accepted by its flow control."""
        if isinstance(error, ApiError):
            self._gate.on_answer(row.region_id)

    def _done(self, row: Row) -> None:
        """The action took effect: keep the links and the quota count current."""
        if self.action.done_when_linked:
            if self.action.uses_quota:
                self._ledger.commit(row.vpc_id)
            if self._remember_links:
                self.links.add(row.vpc_id, row.instance_id)
        else:
            self.links.remove(row.vpc_id, row.instance_id)

    def _interrupted(self, row: Row, started: str, attempts: int) -> RowResult:
        """The run was interrupted before this row's next request left."""
        if self.may_have_sent(row):
            # Its request left, its answer was ambiguous, and the read-back never went out.
            self._unanswered.discard(row.key)
            return self.skipped(row, INTERRUPTED_IN_FLIGHT, started=started, attempts=attempts)
        message = self._control.skip_message(attempts=attempts)
        return self.skipped(row, message, started=started, attempts=attempts)

    def may_have_sent(self, row: Row) -> bool:
        """Whether the row's request left and no answer has yet told whether it ran.

        For the pool: a row cancelled mid-settle (hard stop) is in doubt only then; one
        cancelled while reading its VPC's links, or at the gate, never sent anything.
        """
        return row.key in self._unanswered

    def _give_up(
        self, row: Row, error: EcsError, attempt: int, started: str, *, abort: bool
    ) -> RowResult:
        if self.action.uses_quota and error.code == LocalCode.QUOTA_EXCEEDED:
            # The service knows better than our count: close this VPC for the rest of the run.
            self._ledger.mark_full(row.vpc_id)
        if abort or self.action.error_class(error) is ErrorClass.FATAL:
            self._reads.stop(error.code)
        return self._failed(row, error, attempt, started)

    async def _reconcile(
        self, row: Row, error: EcsError, attempt: int, started: str
    ) -> RowResult | None:
        """Read the link back after an ambiguous answer; None means "not done: may try again"."""
        try:
            links = await self._reads(
                row.region_id,
                lambda: self._api.describe_classic_link_instances(
                    row.region_id, instance_ids=[row.instance_id]
                ),
            )
        except EcsError as read_error:
            return self._failed(
                row,
                error,
                attempt,
                started,
                f"state unknown: read-back failed ({read_error.code}); a re-run reads it again. ",
            )
        linked_to = {link.vpc_id for link in links if link.instance_id == row.instance_id}
        if self.action.is_done(row.vpc_id in linked_to):
            self._done(row)
            return self._result(
                row,
                self.action.success,
                started,
                attempts=attempt,
                error_code="",
                message=f"confirmed by read-back after {error.code}",
            )
        if linked_to and self.action.done_when_linked:
            other = ", ".join(sorted(linked_to))
            return self._failed(row, error, attempt, started, f"instance is linked to {other}; ")
        return None

    # --- reads that are safe to repeat ---------------------------------------------------

    def _unless_stopping(self) -> None:
        if self._control.stopping:
            # Rows queued behind a read that stopped the run must not each read again, nor
            # fail with that read's error: nothing was tried for them. They are skipped.
            raise _Stopping

    async def _read_vpc_links(self, region: str, vpc_id: str) -> list[str]:
        links = await self._reads(
            region, lambda: self._api.describe_classic_link_instances(region, vpc_id=vpc_id)
        )
        instances = [link.instance_id for link in links if link.vpc_id == vpc_id]
        if not self._ledger.is_known(vpc_id):
            self._ledger.set_linked(vpc_id, len(instances))
        return instances

    # --- small helpers --------------------------------------------------------------------

    def _note_retry(self, row: Row, error: EcsError, delay: float, attempt: int) -> None:
        self._emit(
            RowRetrying(
                line=row.line,
                code=error.code,
                delay=delay,
                attempt=attempt,
                region_id=row.region_id,
                instance_id=row.instance_id,
                vpc_id=row.vpc_id,
                http_status=error.http_status,
                reason=error.message,
            )
        )

    def _slow_down(self, region: str) -> None:
        rate = self._gate.on_throttle(region)
        if rate is not None:
            self._emit(Throttled(region=region, rate=rate, api=self.action.api_action))

    def _failed(
        self, row: Row, error: EcsError, attempts: int, started: str, prefix: str = ""
    ) -> RowResult:
        return self._result(
            row,
            Status.FAILED,
            started,
            request_id=error.request_id,
            error_code=error.code,
            http_status=error.http_status,
            message=prefix + error.message,
            attempts=attempts,
        )

    def skipped(self, row: Row, message: str, *, started: str = "", attempts: int = 0) -> RowResult:
        return self._result(row, Status.SKIPPED, started, message=message, attempts=attempts)

    def _result(
        self,
        row: Row,
        status: Status,
        started: str,
        *,
        request_id: str = "",
        error_code: str = "",
        http_status: int = 0,
        message: str = "",
        attempts: int = 0,
    ) -> RowResult:
        return RowResult(
            line=row.line,
            region_id=row.region_id,
            instance_id=row.instance_id,
            vpc_id=row.vpc_id,
            status=status,
            request_id=request_id,
            error_code=error_code,
            http_status=http_status,
            message=message,
            attempts=attempts,
            started_at=started,
            finished_at=self._now(),
            extra=row.extra,
        )
