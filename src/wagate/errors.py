"""Every error wagate raises on purpose; HTTP status mapping lives in ``wagate.api.errors``."""

from __future__ import annotations

from typing import Any


class WagateError(Exception):
    """Root of wagate's errors: a stable machine ``code`` and a human message."""

    code = "error"

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields


class NotFound(WagateError):
    """The resource does not exist, or belongs to another workspace."""

    code = "not_found"


class Unauthorized(WagateError):
    """No bearer key, an unknown key, or a revoked key."""

    code = "unauthorized"


class AdminRequired(WagateError):
    """The route needs the admin key."""

    code = "admin_required"


class InvalidInput(WagateError):
    """The request is well-formed but its values cannot be used."""

    code = "invalid_input"


class Conflict(WagateError):
    """The request does not fit the resource's current state."""

    code = "conflict"


class RateLimited(WagateError):
    """Too many link attempts in the window; ``retry_after`` says when to try again (seconds)."""

    code = "rate_limited"

    def __init__(self, message: str, retry_after: int, **fields: Any) -> None:
        super().__init__(message, retry_after=retry_after, **fields)
        self.retry_after = max(1, retry_after)


class PayloadTooLarge(WagateError):
    """The request body is larger than the gateway accepts."""

    code = "payload_too_large"


class NoOpenAttempt(NotFound):
    """The account has no open link attempt."""

    code = "no_open_attempt"


class PhoneAlreadyLinked(Conflict):
    """The phone is linked to another account of the workspace and the policy is ``reject``."""

    code = "phone_already_linked"


class IllegalTransition(WagateError):
    """A status change that the transition table forbids."""

    code = "illegal_transition"

    def __init__(self, current: str, target: str) -> None:
        super().__init__(
            f"transition {current} -> {target} is not allowed", current=current, target=target
        )
        self.current = current
        self.target = target


class EngineUnavailable(WagateError):
    """The configured engine cannot be used (missing extra, engine down, wrong engine)."""

    code = "engine_unavailable"


class SessionMoving(EngineUnavailable):
    """The account's session is moving between nodes (a handoff): retry in a moment."""

    code = "session_moving"


class EngineTimeout(WagateError):
    """An engine call did not answer within wagate's own timeout."""

    code = "engine_timeout"


class CredentialsCorrupt(WagateError):
    """Stored credentials failed decryption or their checksum."""

    code = "credentials_corrupt"


class StoreUnavailable(WagateError):
    """The credential store (Redis, a directory) cannot be reached."""

    code = "store_unavailable"


class ConfigError(WagateError):
    """The settings cannot be used as given."""

    code = "config_error"
