"""Bearer-token authentication and the role each view needs."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from flask import g, request

from api.context import hwq_service
from tasks.auth import ROLE_RANK, Principal
from tasks.errors import Forbidden, Unauthorized

P = ParamSpec("P")
R = TypeVar("R")

# The attribute a guarded view carries, so the OpenAPI document can say which role it needs.
ROLE_ATTRIBUTE = "hwq_role"


# Where the front door leaves the principal it authenticated before reading the body.
PRINCIPAL_ENVIRON_KEY = "hwq.principal"


def bearer_token(authorization: str) -> str:
    """The token of an `Authorization: Bearer <token>` header value; raises Unauthorized."""
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("Send the header Authorization: Bearer <token>.")
    return token


def authenticate_request() -> Principal:
    """The principal named by the request's bearer token; raises Unauthorized."""
    principal: Principal | None = request.environ.get(PRINCIPAL_ENVIRON_KEY)
    if principal is None:
        token = bearer_token(request.headers.get("Authorization", ""))
        principal = hwq_service().authenticate(token)
    g.hwq_principal = principal
    return principal


def current_principal() -> Principal | None:
    """Who the current request was authenticated as, if it was."""
    principal: Principal | None = g.get("hwq_principal")
    return principal


def check_role(principal: Principal, role: str) -> None:
    """Raise Forbidden unless the principal's role ranks at least `role`."""
    # An unknown role from the store ranks below everything rather than crashing.
    if ROLE_RANK.get(principal.role, -1) < ROLE_RANK[role]:
        raise Forbidden(f"This needs the {role} role; the token's role is {principal.role}.")


def require_role(role: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Let a view run only for a token whose role ranks at least `role`."""
    if role not in ROLE_RANK:
        raise ValueError(f"unknown role {role!r}; roles are {', '.join(ROLE_RANK)}")

    def decorate(view: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(view)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            check_role(authenticate_request(), role)
            return view(*args, **kwargs)

        setattr(guarded, ROLE_ATTRIBUTE, role)
        return guarded

    return decorate
