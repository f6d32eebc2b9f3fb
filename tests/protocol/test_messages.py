"""from_json: nested types come from the annotations; bad shapes are InvalidInput."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import pytest

from taskfleet.errors import InvalidInput
from taskfleet.protocol.fields import bounded_list
from taskfleet.protocol.messages import (
    AgentSettings,
    Approval,
    Facts,
    HeartbeatReply,
    InventoryReport,
    PollReply,
    RunTask,
    StatusAck,
    WorkBatch,
    WorkItem,
    WorkRef,
    from_json,
    to_json,
)
from taskfleet.protocol.spool import Spool


@dataclass
class Inner:
    value: int


@dataclass
class Outer:
    # No table names these: from_json reads them from the annotations.
    one: Inner
    maybe: Inner | None = None
    many: Annotated[list[Inner], bounded_list(10)] = field(default_factory=list)
    plain: list[int] = field(default_factory=list)


def work_item(instance_id: int) -> dict[str, object]:
    return {
        "instance_id": instance_id,
        "run_id": 7,
        "task_type": "run-script",
        "params": {"script": "true"},
        "timeout_s": 60.0,
    }


def test_nested_messages_are_built_from_the_annotations() -> None:
    # Given a poll reply as JSON, with work items and settings
    data = {"work": [work_item(1), work_item(2)], "settings": {"task_request_interval_s": 5}}
    # When it is read
    reply = from_json(PollReply, data)
    # Then each nested object is its message class, with defaults for what was left out
    assert all(isinstance(item, WorkItem) for item in reply.work)
    assert [item.instance_id for item in reply.work] == [1, 2]
    assert reply.work[0].retries == 0 and reply.cancel == []
    assert isinstance(reply.settings, AgentSettings)
    assert reply.settings.task_request_interval_s == 5


def test_a_message_round_trips_through_json() -> None:
    # Given a work batch with lists of two message classes
    batch = WorkBatch(
        work=[WorkRef(1, 10, 7)],
        runs=[RunTask(7, "run-script", {"script": "true"}, 60.0, param_values={"a": "b"})],
        cancel=[WorkRef(2, 11, 7)],
        more=True,
    )
    # When it goes to JSON text and back
    again = from_json(WorkBatch, json.loads(json.dumps(to_json(batch))))
    # Then it is the same batch
    assert again == batch


def test_optional_fields_take_none_a_value_or_their_default() -> None:
    # Given an optional nested message, present, null and absent
    present = from_json(Outer, {"one": {"value": 1}, "maybe": {"value": 2}})
    null = from_json(Outer, {"one": {"value": 1}, "maybe": None})
    absent = from_json(Outer, {"one": {"value": 1}})
    # Then it is built when present, and None otherwise
    assert present.maybe == Inner(2)
    assert null.maybe is None and absent.maybe is None
    # And optional plain values are taken as they come
    report = from_json(InventoryReport, {"facts": {"name": "pc", "hardware_id": "h"}})
    assert report.uptime_s is None and isinstance(report.facts, Facts)
    assert from_json(InventoryReport, {**to_json(report), "uptime_s": 3.5}).uptime_s == 3.5


def test_list_fields_build_each_item_and_keep_plain_lists() -> None:
    # When a message with a list of messages (inside Annotated) and a list of ints is read
    outer = from_json(Outer, {"one": {"value": 0}, "many": [{"value": 1}], "plain": [4, 5]})
    # Then the messages are built and the plain list is kept as it came
    assert outer.many == [Inner(1)]
    assert outer.plain == [4, 5]


def test_enum_fields_take_their_strings_and_refuse_others() -> None:
    # Given a heartbeat reply as the NS sends it: the approval as a plain string
    data = {"approval": "approved", "enabled": True, "agents_epoch": 3}
    # When it is read, the approval is the enum, still equal to the stored string
    reply = from_json(HeartbeatReply, data)
    assert reply.approval is Approval.APPROVED and reply.approval == "approved"
    assert to_json(reply)["approval"] == "approved"
    # And a value that is no approval is InvalidInput, saying which there are
    with pytest.raises(InvalidInput) as raised:
        from_json(HeartbeatReply, {**data, "approval": "maybe"})
    assert raised.value.message == (
        "HeartbeatReply.approval: 'maybe' is not one of pending, approved, revoked"
    )


def test_unknown_keys_are_ignored() -> None:
    # A newer peer may add fields
    ack = from_json(StatusAck, {"accepted": ["e1"], "added_later": 1})
    assert ack == StatusAck(accepted=["e1"])


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ([], "Outer: expected a JSON object, got list"),
        ({}, "Outer: 'one' is missing"),
        ({"one": 3}, "Outer.one: expected a JSON object, got int"),
        ({"one": {"value": 1}, "many": {"value": 1}}, "Outer.many: expected a list, got dict"),
        ({"one": {"value": 1}, "many": [{"value": 1}, 5]}, "Outer.many[1]: expected a JSON"),
        ({"one": {"value": 1}, "many": [{"value": 1}, {}]}, "Outer.many[1]: 'value' is missing"),
    ],
)
def test_wrong_shapes_are_invalid_input_naming_where(data: object, where: str) -> None:
    # When JSON of the wrong shape is read
    with pytest.raises(InvalidInput) as raised:
        from_json(Outer, data)
    # Then the error is the error tree's InvalidInput (not a bare ValueError), saying where
    assert raised.value.message.startswith(where)
    assert not isinstance(raised.value, ValueError)


def test_missing_field_names_the_field() -> None:
    with pytest.raises(InvalidInput) as raised:
        from_json(WorkRef, {"computer_id": 1, "run_id": 2})
    assert raised.value.field == "instance_id"


def test_a_spool_file_with_an_incomplete_event_is_set_aside(tmp_path: Path) -> None:
    # Given a spool file whose event lacks a required field
    (tmp_path / "incomplete.json").write_text(json.dumps([{"id": "ev-1"}]))
    # When the spool is opened (InvalidInput from from_json is one of the errors it expects)
    spool = Spool(tmp_path)
    # Then the file is moved aside and nothing is pending
    assert list(spool.pending()) == []
    assert (tmp_path / "incomplete.bad").exists()
