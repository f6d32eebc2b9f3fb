"""A client job's step records on the NS: each record judged on its own (R12).

A bad record (a NUL in its name, an over-long path, more records than allowed) is
refused alone: the instance's final status, which the same event carries, is applied,
and the good records are stored. Output is escaped and cut, never refused.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from taskfleet.ns import instance_steps, status_intake
from taskfleet.protocol import step_records
from taskfleet.protocol.fields import NUL_SYMBOL
from taskfleet.storage.models import Instance
from tests.ns.test_status_isolation import Sessions, event, given_instances, run


def good(path: str, **fields: Any) -> dict[str, Any]:
    values = {"path": path, "name": f"step {path}", "state": "Succeeded", "return_code": 0,
              "output": f"out {path}"}  # fmt: skip
    return values | fields


def test_bad_step_records_are_refused_alone_and_the_status_is_applied(db_url: str) -> None:
    async def body(sessions: Sessions) -> None:
        # Given three computers' client job instances, ended with step records, some bad:
        given = await given_instances(sessions, 3)
        where = given["instances"]
        mixed = [
            good("1"),
            good("2", name="nul\x00here"),  # refused: NUL
            good("3") | {"path": "3." * 40},  # refused: over-long (and not step numbers)
            good("4", name="x" * 300),  # refused: over-long name
            good("5", state="Bogus", output="lost"),  # refused: no such state
            good("6", return_code=2**40),  # refused: wider than the column
            good("7", output="nul \x00 in output " + "y" * 20_000),  # escaped and cut
            "not a record",
            good("2.1", name="half \ud800 surrogate"),  # refused: lone surrogate
        ]
        too_many = [good(str(n)) for n in range(1, step_records.MAX_STEP_RECORDS + 21)]
        batch = [
            event(where["pc-0"], output="job text", steps=mixed),
            event(where["pc-1"], state="Failed", return_code=1, steps=too_many),
            event(where["pc-2"], steps="not a list"),
        ]

        # When a task server relays them
        async with sessions() as session, session.begin():
            done = await status_intake.relayed(session, [e.__dict__ for e in batch], given["ts"])

        # Then every event is accepted and every instance ended as its agent said
        assert set(done.ack.accepted) == {e.id for e in batch}
        assert done.ack.rejected == []
        async with sessions() as session:
            rows = {i.id: i for i in (await session.scalars(select(Instance))).all()}
            first = await instance_steps.of_instance(session, where["pc-0"][0])
            second = await instance_steps.of_instance(session, where["pc-1"][0])
            third = await instance_steps.of_instance(session, where["pc-2"][0])
        assert (rows[where["pc-0"][0]].state, rows[where["pc-0"][0]].output) == (
            "Succeeded",
            "job text",
        )
        assert rows[where["pc-1"][0]].state == "Failed"
        assert rows[where["pc-2"][0]].state == "Succeeded"
        # And only the good records are stored, in order; output escaped and cut
        assert [s.path for s in first] == ["1", "7"]
        assert (first[0].name, first[0].state, first[0].return_code, first[0].output) == (
            "step 1",
            "Succeeded",
            0,
            "out 1",
        )
        assert first[1].output.startswith(f"nul {NUL_SYMBOL} in output")
        assert "output truncated by taskfleet" in first[1].output
        assert len(first[1].output) < step_records.STEP_OUTPUT_LIMIT + 200
        # And of too many records, those past the limit are refused, the rest kept
        assert [s.path for s in second] == [str(n) for n in range(1, 101)]
        assert third == []

    run(db_url, body)


def test_step_records_of_a_resent_or_late_event_are_not_stored_twice(db_url: str) -> None:
    async def body(sessions: Sessions) -> None:
        # Given an instance ended with two step records
        given = await given_instances(sessions, 1)
        ended = event(given["instances"]["pc-0"], steps=[good("1"), good("2")])
        async with sessions() as session, session.begin():
            await status_intake.relayed(session, [ended.__dict__], given["ts"])

        # When the same event is resent, and another final status comes later
        late = event(given["instances"]["pc-0"], state="Failed", steps=[good("9")])
        async with sessions() as session, session.begin():
            done = await status_intake.relayed(
                session, [ended.__dict__, late.__dict__], given["ts"]
            )

        # Then both are acknowledged, and the records are those of the first, once
        assert set(done.ack.accepted) == {ended.id, late.id}
        async with sessions() as session:
            steps = await instance_steps.of_instance(session, given["instances"]["pc-0"][0])
            by_run = await instance_steps.of_run(session, 1)
        assert [s.path for s in steps] == ["1", "2"]
        assert [s.path for s in by_run[(given["instances"]["pc-0"][1], "pc-0")]] == ["1", "2"]

    run(db_url, body)


def test_a_senders_size_estimate_never_fails_on_what_an_agent_sent() -> None:
    # Given step records of any shape (a task server relays what its agents sent)
    odd: Any = [{"output": 5}, {"output": "ab"}, 3, None, {"output": None}]
    # Then the request-size estimate counts the text it can, and never raises
    assert step_records.output_size(odd) == 2
    assert step_records.output_size("not a list") == 0
