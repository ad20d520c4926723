"""Sending a message: an idempotent claim, the engine's send, and the id it answers."""

from __future__ import annotations

import logging

from wagate.core.caller import Caller
from wagate.db.models import Message
from wagate.errors import Conflict, EngineUnavailable, SessionMoving, WagateError
from wagate.services import messages
from wagate.sessions.manager import SessionManager

log = logging.getLogger("wagate.messaging")


async def send(
    manager: SessionManager,
    caller: Caller,
    account_id: str,
    to: str,
    text: str,
    client_ref: str | None = None,
) -> Message:
    """Queue a text and hand it to the engine; a known ``client_ref`` returns its message.

    The account's lock is held until the engine's message id is stored, so a receipt for it
    (applied under the same lock) always finds the message. ``SessionMoving`` when the session
    is being handed to another node, or was a moment ago: nothing was sent, ask its next node.
    """
    manager.check_accepting()
    async with manager.lock(account_id):
        if manager.moving(account_id):
            raise SessionMoving("the account's session is moving to another node; retry")
        # A unique-key race on client_ref (another process) reruns the claim, which then finds
        # the winner's message.
        message, created = await manager.db.run(
            lambda s: messages.claim(s, caller, account_id, to, text, client_ref),
            retry_integrity=True,
        )
        if not created:
            return message
        try:
            wa_id = await manager.runtime.call(manager.engine.send_text(account_id, to, text))
        except EngineUnavailable as exc:
            # The session dropped before the database heard of it (a reconnect under way):
            # nothing was sent, so nothing is kept and the client_ref stays free.
            await manager.db.run(lambda s: messages.forget(s, message.id))
            if account_id not in manager.held:  # connected, but served elsewhere by now
                raise SessionMoving("the account's session moved to another node; retry") from exc
            raise Conflict(
                "the account's session is not connected right now; retry when it is"
            ) from exc
        except Exception as exc:
            await manager.db.run(lambda s: messages.fail(s, message.id, "engine_error"))
            log.warning(
                "message not sent",
                extra={"account_id": account_id, "message_id": message.id},
            )
            if isinstance(exc, WagateError):
                raise
            raise EngineUnavailable("the engine could not send the message") from exc
        return await manager.db.run(lambda s: messages.store_wa_id(s, message.id, wa_id))
