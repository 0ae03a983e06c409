"""Python client for tactful, the gRPC re-ranking sidecar.

    from tactful import Tactful
    client = Tactful("127.0.0.1:50051")
    result = client.rank("alice", candidates, k=8)     # never raises for a down or late server
    for item in result.items:
        print(item.item_id, item.reason)

:class:`Tactful` wraps the stubs generated from ``proto/tactful/v1`` (importable as
``tactful.v1.ranker_pb2`` and so on); :func:`stable_id` hashes string ids the way the README
documents.
"""

from .client import (
    DEFAULT_RANK_TIMEOUT,
    DEFAULT_TARGET,
    DEFAULT_TIMEOUT,
    Dropped,
    Item,
    RankResult,
    Tactful,
    TactfulError,
    candidate,
    event,
    f32le,
    stable_id,
)

__all__ = [
    "DEFAULT_RANK_TIMEOUT",
    "DEFAULT_TARGET",
    "DEFAULT_TIMEOUT",
    "Dropped",
    "Item",
    "RankResult",
    "Tactful",
    "TactfulError",
    "candidate",
    "event",
    "f32le",
    "stable_id",
]
__version__ = "0.1.0"
