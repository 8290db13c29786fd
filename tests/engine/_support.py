"""A scripted provider and invariant checks shared by the engine tests."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from chatsvg_core.errors import ProviderPermanentError, ProviderTransientError
from chatsvg_core.generate import GenerationRequest, ProviderOutput
from chatsvg_core.jobs import Job, JobStatus
from chatsvg_core.storage import EntryKind, LedgerEntry, Store

SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10">'
    '<circle cx="5" cy="5" r="4" fill="red"/></svg>'
)


class Crash(BaseException):
    """A simulated process death: not an Exception, so nothing in the engine catches it."""


class ScriptedProvider:
    """Answers from a script: 'ok', 'prose', 'transient', 'permanent', 'nosvg', 'crash'."""

    name = "scripted"

    def __init__(self, script: Sequence[str] = ()) -> None:
        self.script: deque[str] = deque(script)
        self.default = "ok"
        self.calls = 0

    async def generate(self, request: GenerationRequest) -> ProviderOutput:
        self.calls += 1
        step = self.script.popleft() if self.script else self.default
        if step == "transient":
            raise ProviderTransientError("503 from upstream", provider=self.name, status=503)
        if step == "permanent":
            raise ProviderPermanentError("400 from upstream", provider=self.name, status=400)
        if step == "crash":
            raise Crash
        text = {
            "ok": SVG,
            "prose": f"Here you go:\n```svg\n{SVG}\n```\nEnjoy!",
            "nosvg": "I cannot draw that.",
        }[step]
        return ProviderOutput(text=text, model="scripted-1", provider=self.name, latency_s=0.0)


async def ledger_rows(store: Store, owners: Sequence[str]) -> dict[str, list[LedgerEntry]]:
    async with store.transaction() as tx:
        return {o: list(await tx.entries(o, limit=100_000)) for o in owners}


async def all_jobs(store: Store) -> list[Job]:
    async with store.transaction() as tx:
        return list(await tx.list_jobs(limit=100_000))


async def check_invariants(store: Store, owners: Sequence[str], *, recovered: bool) -> None:
    """The money and job invariants of ARCHITECTURE.md, over everything in ``store``."""
    rows = await ledger_rows(store, owners)
    jobs = {j.id: j for j in await all_jobs(store)}
    async with store.transaction() as tx:
        for owner, entries in rows.items():
            total = sum(e.amount for e in entries)
            assert await tx.balance(owner) == total, "balance != sum of entries"
            assert total >= 0, f"negative balance for {owner}"
    # A job is paid by a charge (at claim) or a reservation (at submit), and
    # given back by a refund or a release: the same rules hold for either pair.
    charges: dict[str, list[LedgerEntry]] = {}
    refunds: dict[str, list[LedgerEntry]] = {}
    captures: dict[str, list[LedgerEntry]] = {}
    paid_kinds = {EntryKind.CHARGE, EntryKind.RESERVE}
    back_kinds = {EntryKind.REFUND: EntryKind.CHARGE, EntryKind.RELEASE: EntryKind.RESERVE}
    for entries in rows.values():
        for e in entries:
            if e.kind in paid_kinds:
                charges.setdefault(e.ref or "", []).append(e)
            elif e.kind in back_kinds:
                refunds.setdefault(e.ref or "", []).append(e)
            elif e.kind is EntryKind.CAPTURE:
                captures.setdefault(e.ref or "", []).append(e)
    for ref, cs in charges.items():
        assert len(cs) == 1, f"job {ref} paid {len(cs)} times ({[c.kind for c in cs]})"
        assert ref in jobs, "charge for an unknown job"
    for ref, rs in refunds.items():
        assert len(rs) == 1, f"job {ref} refunded {len(rs)} times"
        assert ref in charges, "refund without a charge"
        assert back_kinds[rs[0].kind] is charges[ref][0].kind, "refund of the other mode"
        assert rs[0].amount == -charges[ref][0].amount, "refund differs from charge"
    for ref, caps in captures.items():
        assert len(caps) == 1, f"job {ref} captured {len(caps)} times"
        assert ref in charges and charges[ref][0].kind is EntryKind.RESERVE, "capture, no hold"
        assert ref not in refunds, f"job {ref} captured and released"
    for job in jobs.values():
        charged, refunded = job.id in charges, job.id in refunds
        reserved = charged and charges[job.id][0].kind is EntryKind.RESERVE
        if job.status is JobStatus.SUCCEEDED:
            assert charged and not refunded, f"succeeded job {job.id}: {charged=} {refunded=}"
            assert not reserved or job.id in captures, f"succeeded job {job.id} not captured"
        elif job.status is JobStatus.FAILED and recovered:
            assert charged == refunded, f"failed job {job.id}: {charged=} {refunded=}"
        elif job.status is JobStatus.QUEUED:
            assert not refunded
        if job.status is not JobStatus.SUCCEEDED:
            assert job.id not in captures, f"{job.status} job {job.id} captured"
