"""The one error tree: its public names are exactly what is meant."""

from __future__ import annotations

import taskfleet.errors as errors


def test_public_names_are_exactly_the_error_tree() -> None:
    assert set(errors.__all__) == {
        "Busy",
        "Conflict",
        "Forbidden",
        "InvalidInput",
        "NotApproved",
        "NotAssigned",
        "NotFound",
        "PayloadTooLarge",
        "TaskfleetError",
        "TokenRefused",
        "TooManyRequests",
        "Unauthenticated",
        "Unavailable",
        "error_for_code",
    }


def test_codes_round_trip_to_the_same_class() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        if isinstance(cls, type) and cls is not errors.TaskfleetError:
            rebuilt = errors.error_for_code(cls.code, "m")
            assert type(rebuilt) is cls and rebuilt.status_code == cls.status_code
