"""Request bodies and JSON views of accounts: users, sessions, API tokens.

The account rules live in :mod:`app.accounts.auth` (which gives the messages of its 422s); the
schemas repeat them as ``pattern``/``enum``/``minLength`` so that they appear in OpenAPI.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from app.accounts import auth
from app.common import UtcDateTime
from app.db.tables import ApiToken, Role, User

RoleName = Literal["admin", "researcher", "reader"]
ROLES: tuple[str, ...] = tuple(Role)
# auth.check_username: 3-64 of USERNAME_CHARS once stripped and lower-cased (so upper case is
# accepted and stored in lower case).
USERNAME_PATTERN = r"^[a-zA-Z0-9._@-]{3,64}$"
USERNAME_RULE = (
    "3-64 characters of a-z, 0-9, '.', '_', '-' or '@' (upper case is accepted and stored in "
    "lower case)."
)
NEW_PASSWORD_RULE = (
    f"At least {auth.MIN_PASSWORD_LENGTH} characters and not easy to guess (common passwords, "
    "keyboard patterns, repeats and the user name are refused)."
)


class LoginBody(BaseModel):
    username: str = Field(max_length=64)
    password: str = Field(max_length=256)


class TokenBody(BaseModel):
    name: str = Field("token", min_length=1, max_length=100, description="A name to tell it by.")


class UserBody(BaseModel):
    # The rules are checked by app.accounts.auth (its messages name them); the schema shows them.
    username: str = Field(
        max_length=64, description=USERNAME_RULE, json_schema_extra={"pattern": USERNAME_PATTERN}
    )
    password: str = Field(
        max_length=256, description=NEW_PASSWORD_RULE,
        json_schema_extra={"minLength": auth.MIN_PASSWORD_LENGTH},
    )  # fmt: skip
    role: str = Field("researcher", json_schema_extra={"enum": list(ROLES)})


class PasswordChange(BaseModel):
    current_password: str = Field(max_length=256)
    new_password: str = Field(
        max_length=256, description=NEW_PASSWORD_RULE,
        json_schema_extra={"minLength": auth.MIN_PASSWORD_LENGTH},
    )  # fmt: skip


class PasswordSet(BaseModel):
    password: str = Field(
        max_length=256, description=NEW_PASSWORD_RULE,
        json_schema_extra={"minLength": auth.MIN_PASSWORD_LENGTH},
    )  # fmt: skip


class UserOut(BaseModel):
    """An account (never its password hash)."""

    id: int
    username: str = Field(description="Lower case; " + USERNAME_RULE)
    role: RoleName
    is_active: bool = Field(description="False: deactivated (cannot log in, tokens refused).")


class SessionOut(BaseModel):
    """Who is logged in, and the CSRF token a browser session sends in ``X-CSRF-Token``."""

    user: UserOut
    csrf_token: str | None = Field(
        description="The session's CSRF token; null for a caller using an API token."
    )


class OkOut(BaseModel):
    ok: bool


class NewTokenOut(BaseModel):
    """A new API token: ``token`` is shown in this answer only (only its hash is stored)."""

    id: int
    name: str
    token: str = Field(description="Send it as 'Authorization: Bearer <token>'.")


class TokenOut(BaseModel):
    id: int
    name: str
    created_at: UtcDateTime


class RevokedOut(BaseModel):
    user: UserOut
    revoked: int = Field(ge=0, description="How many API tokens were deleted.")


def user_json(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "role": user.role,
        "is_active": user.is_active,
    }


def user_out(user: User) -> UserOut:
    return UserOut.model_validate(user_json(user))


def token_out(row: ApiToken) -> TokenOut:
    return TokenOut(id=row.id, name=row.name, created_at=row.created_at)
