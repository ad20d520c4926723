"""The finite statuses of webhook deliveries and messages, and the workspace's choices.

The database's CHECK constraints are generated from these enums (``wagate.db.models``), so a
value the code can write is always one the schema allows.
"""

from __future__ import annotations

from enum import StrEnum


class DeliveryStatus(StrEnum):
    """Where a webhook delivery stands (DESIGN §2)."""

    PENDING = "pending"  # due now or later; the dispatcher will (re)try it
    DELIVERED = "delivered"  # the receiver answered 2xx
    DEAD = "dead"  # every attempt failed; replayable by API and CLI


class MessageStatus(StrEnum):
    """A message's progress; receipts only move an outgoing one forward."""

    QUEUED = "queued"  # stored, not yet acknowledged by WhatsApp's server
    SENT = "sent"  # the server took it
    DELIVERED = "delivered"  # the recipient's phone got it
    READ = "read"  # the recipient read it
    FAILED = "failed"  # it will not be sent; the event's reason says why
    RECEIVED = "received"  # an incoming message


class MessageDirection(StrEnum):
    """Which way a message went."""

    IN = "in"  # received from a chat
    OUT = "out"  # sent through wagate


class WebhookFormat(StrEnum):
    """The shape of a workspace's webhook requests (DESIGN §7)."""

    WAGATE = "wagate"  # wagate's own envelope and signature
    BLAZZ = "blazz"  # the whatsapp-web.js service's events and HMAC header


class LinkPolicy(StrEnum):
    """What happens when a phone links into a second account of the same workspace."""

    REPLACE = "replace"  # the older account is logged out with reason superseded
    REJECT = "reject"  # the new attempt fails with reason phone_already_linked


class NodeState(StrEnum):
    """A gateway process in the cluster (DESIGN §13)."""

    LIVE = "live"  # heartbeating; may own sessions
    LEAVING = "leaving"  # shutting down: closing its sessions and releasing their leases
    DEAD = "dead"  # stopped, or silent past its lease: its sessions are taken by the others
