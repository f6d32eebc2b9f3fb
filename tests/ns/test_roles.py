"""Roles: an enum stored as the same strings, ordered viewer < operator < admin."""

from __future__ import annotations

import pytest

from taskfleet.errors import Forbidden, InvalidInput
from taskfleet.ns.auth import Admin
from taskfleet.ns.users import Role, check_role


def test_roles_are_the_stored_strings_in_order() -> None:
    assert [r.value for r in Role] == ["viewer", "operator", "admin"]
    assert Role("admin") is Role.ADMIN and str(Role.ADMIN) == "admin"


@pytest.mark.parametrize(
    ("role", "needed", "allowed"),
    [
        (Role.VIEWER, Role.VIEWER, True),
        (Role.VIEWER, Role.OPERATOR, False),
        (Role.OPERATOR, Role.OPERATOR, True),
        (Role.OPERATOR, Role.ADMIN, False),
        (Role.ADMIN, Role.VIEWER, True),
        (Role.ADMIN, Role.ADMIN, True),
    ],
)
def test_each_role_may_do_what_the_ones_before_it_may(
    role: Role, needed: Role, allowed: bool
) -> None:
    assert role.allows(needed) is allowed


def test_require_refuses_a_lower_role_naming_both() -> None:
    # Given an operator
    operator = Admin("olga", Role.OPERATOR)
    # Then an operator's step passes and an admin's is Forbidden, saying why
    operator.require(Role.OPERATOR)
    with pytest.raises(Forbidden, match="olga has role operator; this needs role admin"):
        operator.require(Role.ADMIN)


def test_an_unknown_role_is_invalid_input_listing_the_roles() -> None:
    assert check_role("operator") is Role.OPERATOR
    with pytest.raises(InvalidInput, match="must be one of: viewer, operator, admin") as raised:
        check_role("root")
    assert raised.value.field == "role"
