"""Users and roles over the REST API (admin only, apart from ``/api/me``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated

from fastapi import APIRouter, Request
from pydantic import Field
from sqlalchemy import select

from taskfleet.ns import users
from taskfleet.ns.auth import Administrator, Viewer
from taskfleet.ns.identity_replies import Caller, UserCreated
from taskfleet.ns.openapi import errors
from taskfleet.ns.state import ns_state
from taskfleet.protocol.fields import Name, ShortText, text
from taskfleet.storage.models import ApiUser

router = APIRouter(prefix="/api", tags=["users"])


Password = Annotated[str, text(users.MAX_PASSWORD, users.MIN_PASSWORD)]
# The roles as the document's enum; ns.users checks them and says which there are.
Role = Annotated[ShortText, Field(json_schema_extra={"enum": [r.value for r in users.Role]})]


@dataclass
class UserRequest:
    name: Name
    role: Role = "viewer"
    password: Password | None = None


@dataclass
class RoleRequest:
    role: Role


@dataclass
class PasswordRequest:
    password: Password


@router.get("/me")
async def me(caller: Viewer) -> Caller:
    return Caller(caller.name, caller.role)


@router.get("/users")
async def list_users(request: Request, _: Administrator) -> list[users.UserView]:
    async with ns_state(request).session() as session:
        rows = await session.scalars(select(ApiUser).order_by(ApiUser.name))
        return [users.view(u) for u in rows]


@router.post("/users", status_code=201, responses=errors(409))
async def create_user(request: Request, body: UserRequest, admin: Administrator) -> UserCreated:
    async with ns_state(request).session() as session:
        user, credential = await users.create(
            session, body.name, body.role, body.password, admin.name
        )
        # The credential's secret is shown this once; only its hash is kept.
        return UserCreated(**asdict(users.view(user)), credential=str(credential))


@router.post("/users/{key:path}/role")
async def set_role(
    request: Request, key: str, body: RoleRequest, admin: Administrator
) -> users.UserView:
    async with ns_state(request).session() as session:
        user = await users.find(session, key)
        await users.set_role(session, user, body.role, admin.name)
        return users.view(user)


@router.post("/users/{key:path}/password")
async def set_password(
    request: Request, key: str, body: PasswordRequest, admin: Administrator
) -> users.UserView:
    async with ns_state(request).session() as session:
        user = await users.find(session, key)
        await users.set_password(session, user, body.password, admin.name)
        return users.view(user)


@router.post("/users/{key:path}/disable")
async def disable(request: Request, key: str, admin: Administrator) -> users.UserView:
    async with ns_state(request).session() as session:
        user = await users.find(session, key)
        await users.disable(session, user, admin.name)
        return users.view(user)
