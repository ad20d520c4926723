"""Request dependencies: the gateway, the caller behind the bearer key, a DB session."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from wagate.core.caller import Caller
from wagate.errors import AdminRequired, Unauthorized
from wagate.gateway import Gateway
from wagate.services.keys import authenticate, hash_key
from wagate.sessions.manager import SessionManager

log = logging.getLogger("wagate.api")
_bearer = HTTPBearer(auto_error=False, description="A workspace key or the admin key.")


# Dependencies are ``async def`` even when they do not wait: FastAPI runs a plain ``def`` in a
# worker thread, a thread hop on every request.
async def get_gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


GatewayDep = Annotated[Gateway, Depends(get_gateway)]


async def get_manager(gateway: GatewayDep) -> SessionManager:
    return gateway.manager()


ManagerDep = Annotated[SessionManager, Depends(get_manager)]


async def get_session(gateway: GatewayDep) -> AsyncIterator[AsyncSession]:
    """A read session; writes go through ``Database.run`` so they retry lock conflicts."""
    session = gateway.db.read_sessions()
    try:
        yield session
    finally:
        try:
            await session.close()
        except (DBAPIError, OSError):
            # The answer has gone out already; a connection lost meanwhile (the database out of
            # reach) only fails the rollback of what was read, and the pool drops it.
            log.warning("read session closed on a lost connection", exc_info=True)


SessionDep = Annotated[AsyncSession, Depends(get_session)]


async def get_caller(
    gateway: GatewayDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("missing bearer key: send 'Authorization: Bearer <key>'")
    digest = hash_key(credentials.credentials)
    caller = gateway.keys.get(digest)
    if caller is None:
        async with gateway.db.read_sessions() as session:
            caller = await authenticate(session, credentials.credentials, gateway.admin_key)
        gateway.keys.put(digest, caller)
    return caller


CallerDep = Annotated[Caller, Depends(get_caller)]


async def get_admin(caller: CallerDep) -> Caller:
    if not caller.is_admin:
        raise AdminRequired("this route needs the admin key")
    return caller


AdminDep = Annotated[Caller, Depends(get_admin)]
