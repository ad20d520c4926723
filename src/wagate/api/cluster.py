"""The cluster as the admin sees it (DESIGN §13): every node, its state and its sessions."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel

from wagate.api.deps import AdminDep, SessionDep
from wagate.api.schemas import ErrorBody, example
from wagate.services import cluster

router = APIRouter(
    prefix="/v1/cluster",
    tags=["cluster"],
    responses={
        401: {"model": ErrorBody, "description": "Missing, unknown or revoked key"},
        403: {"model": ErrorBody, "description": "Needs the admin key"},
    },
)


class NodeOut(BaseModel):
    name: str
    state: str
    started_at: datetime
    last_seen_at: datetime
    sessions_owned: int


class ClusterOut(BaseModel):
    model_config = example(
        {
            "nodes": [
                {
                    "name": "gw-a",
                    "state": "live",
                    "started_at": "2026-01-01T12:00:00Z",
                    "last_seen_at": "2026-01-01T12:30:05Z",
                    "sessions_owned": 1480,
                },
                {
                    "name": "gw-b",
                    "state": "dead",
                    "started_at": "2026-01-01T12:00:02Z",
                    "last_seen_at": "2026-01-01T12:29:41Z",
                    "sessions_owned": 0,
                },
            ]
        }
    )

    nodes: list[NodeOut]


@router.get("", response_model=ClusterOut)
async def read_cluster(admin: AdminDep, session: SessionDep) -> ClusterOut:
    """Every node that shares this database: ``live``, ``leaving`` or ``dead``, when it started
    and was last seen (the database's clock), and how many sessions and open attempts it owns."""
    nodes = await cluster.nodes(session)
    return ClusterOut(
        nodes=[
            NodeOut(
                name=n.name,
                state=n.state,
                started_at=n.started_at,
                last_seen_at=n.last_seen_at,
                sessions_owned=n.sessions_owned,
            )
            for n in nodes
        ]
    )
