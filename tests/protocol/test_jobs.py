"""Job conditions: parsed once with the field named, then applied the same everywhere."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskfleet.errors import InvalidInput
from taskfleet.protocol.jobs import (
    Action,
    Conditions,
    Then,
    decide,
    parse_action,
    parse_conditions,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("continue", Then(Action.CONTINUE)),
        (" stop-failed ", Then(Action.STOP_FAILED)),
        ("stop-succeeded", Then(Action.STOP_SUCCEEDED)),
        ("goto:1", Then(Action.GOTO, 0)),
        ("goto:3", Then(Action.GOTO, 2)),
    ],
)
def test_actions_parse(text: str, expected: Then) -> None:
    assert parse_action(text, 3, "steps.0.on_success") == expected
    assert parse_action(str(expected), 3, "x") == expected  # what is shown parses back


@pytest.mark.parametrize("text", ["goto:4", "goto:0", "goto", "goto:x", "stop", "", None, 3])
def test_a_bad_action_is_refused_naming_the_field(text: object) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_action(text, 3, "steps.1.on_failure", "step 2, on_failure")
    assert caught.value.field == "steps.1.on_failure"
    assert "step 2" in caught.value.message


def test_conditions_default_to_continue_on_success_and_stop_on_failure() -> None:
    assert parse_conditions({}, 2, 0) == Conditions()
    found = parse_conditions({"on_code": {"3010": "continue", "-1": "goto:1"}}, 2, 1)
    assert found.on_code == ((-1, Then(Action.GOTO, 0)), (3010, Then(Action.CONTINUE)))
    assert parse_conditions(found.as_json(), 2, 1) == found


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"on_code": {"x": "continue"}}, "steps.1.on_code"),
        ({"on_code": {str(2**31): "continue"}}, "steps.1.on_code"),
        ({"on_code": ["continue"]}, "steps.1.on_code"),
        ({"on_code": {"5": "goto:9"}}, "steps.1.on_code.5"),
        ({"on_success": "retry"}, "steps.1.on_success"),
    ],
)
def test_bad_conditions_name_their_field(data: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_conditions(data, 2, 1)
    assert caught.value.field == field


def test_decisions() -> None:
    plain = Conditions()
    # Given a three-step job: success goes on, the last success ends it succeeded
    assert decide(plain, 0, 3, True, 0).next == 1
    last = decide(plain, 2, 3, True, 0)
    assert (last.next, last.succeeded) == (None, True)
    # and a failure stops it failed, saying which step
    failed = decide(plain, 1, 3, False, 1)
    assert (failed.next, failed.succeeded) == (None, False)
    assert "step 2" in failed.reason
    # A listed return code wins over success or failure
    reboot = Conditions(on_code=((3010, Then(Action.CONTINUE)),))
    assert decide(reboot, 0, 2, False, 3010).next == 1
    # and goto jumps, also backwards
    again = Conditions(on_failure=Then(Action.GOTO, 0))
    assert decide(again, 1, 2, False, 2).next == 0
    # A timed-out step has no return code: its failure condition decides
    assert decide(reboot, 0, 2, False, None).next is None


@given(
    steps=st.integers(1, 20),
    data=st.data(),
    succeeded=st.booleans(),
    rc=st.none() | st.integers(-(2**31), 2**31 - 1),
)
def test_a_decision_always_names_a_real_step_or_ends(
    steps: int, data: st.DataObject, succeeded: bool, rc: int | None
) -> None:
    actions = st.sampled_from(["continue", "stop-failed", "stop-succeeded"]) | st.integers(
        1, steps
    ).map(lambda k: f"goto:{k}")
    raw = {
        "on_success": data.draw(actions),
        "on_failure": data.draw(actions),
        "on_code": data.draw(st.dictionaries(st.integers(-5, 5).map(str), actions, max_size=3)),
    }
    index = data.draw(st.integers(0, steps - 1))
    decision = decide(parse_conditions(raw, steps, index), index, steps, succeeded, rc)
    if decision.next is None:
        assert decision.reason
    else:
        assert 0 <= decision.next < steps
