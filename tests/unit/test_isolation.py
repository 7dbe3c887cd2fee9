"""consumer.isolation.SuspectGate: ordinary deliveries side by side, a suspect alone."""

from __future__ import annotations

import asyncio

from consumer.isolation import SuspectGate


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_ordinary_deliveries_run_side_by_side() -> None:
    gate = SuspectGate()
    await gate.enter()
    await asyncio.wait_for(gate.enter(), timeout=1)  # a second one does not wait
    gate.leave()
    gate.leave()


async def test_a_suspect_waits_until_no_ordinary_delivery_runs() -> None:
    gate = SuspectGate()
    await gate.enter()
    suspect = asyncio.create_task(gate.enter_alone())
    await _settle()
    assert not suspect.done()
    gate.leave()
    await asyncio.wait_for(suspect, timeout=1)
    gate.leave_alone()


async def test_no_ordinary_delivery_starts_while_a_suspect_waits_or_runs() -> None:
    gate = SuspectGate()
    await gate.enter()
    suspect = asyncio.create_task(gate.enter_alone())
    await _settle()
    # A delivery arriving while the suspect waits does not overtake it ...
    ordinary = asyncio.create_task(gate.enter())
    await _settle()
    assert not ordinary.done()
    gate.leave()
    await asyncio.wait_for(suspect, timeout=1)
    await _settle()
    # ... nor start while it runs
    assert not ordinary.done()
    gate.leave_alone()
    await asyncio.wait_for(ordinary, timeout=1)
    gate.leave()


async def test_two_suspects_run_one_after_the_other() -> None:
    gate = SuspectGate()
    await gate.enter_alone()
    second = asyncio.create_task(gate.enter_alone())
    await _settle()
    assert not second.done()
    gate.leave_alone()
    await asyncio.wait_for(second, timeout=1)
    gate.leave_alone()
    await asyncio.wait_for(gate.enter(), timeout=1)  # open again once both are done
    gate.leave()


async def test_a_suspect_cancelled_while_waiting_does_not_block_the_gate() -> None:
    gate = SuspectGate()
    await gate.enter()
    suspect = asyncio.create_task(gate.enter_alone())
    await _settle()
    suspect.cancel()
    await _settle()
    gate.leave()
    await asyncio.wait_for(gate.enter(), timeout=1)
    gate.leave()
    await asyncio.wait_for(gate.enter_alone(), timeout=1)
    gate.leave_alone()
