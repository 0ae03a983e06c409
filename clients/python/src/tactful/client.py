"""The :class:`Tactful` client: ranking that fails open on the client side, events, and the
preference centre, over the stubs generated from ``proto/tactful/v1``."""

from __future__ import annotations

import hashlib
import json
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import grpc
from google.protobuf import json_format

from .v1 import (
    common_pb2,
    events_pb2,
    events_pb2_grpc,
    profile_pb2,
    profile_pb2_grpc,
    ranker_pb2,
    ranker_pb2_grpc,
)

DEFAULT_TARGET = "127.0.0.1:50051"
"""Where ``tactful serve`` listens by default (the sidecar's loopback port)."""

DEFAULT_RANK_TIMEOUT = 0.2
"""Seconds a :meth:`Tactful.rank` call may take before the client fails open. The server's own
budget is 50 ms (``rank.budget_ms``) and it fails open itself within the deadline it is sent;
this leaves room for the network and a cold connection."""

DEFAULT_TIMEOUT = 2.0
"""Seconds for events and profile calls (they wait until changes are durable)."""

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""The server's default ``limits.max_message_bytes``."""

# Only the preference centre's calls are retried: each sets state, so sending one twice changes
# nothing. Rank is not retried (it fails open instead, within its deadline), and neither are
# Events (an impression or a click sent twice counts twice). Calls that never left the client
# are retried by gRPC itself whatever the method, which is always safe.
_SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{"service": "tactful.v1.Profile"}],
                "retryPolicy": {
                    "maxAttempts": 3,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "0.5s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)

# Codes that say the request itself is wrong: raised, never hidden behind a fail-open answer
# (a host that sends bad requests should find out in its tests, not in production metrics).
_CALLER_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.NOT_FOUND,
}


def stable_id(value: str) -> int:
    """The 64-bit id tactful expects for a string id: the first 8 bytes of the SHA-256 of its
    UTF-8 bytes, read big-endian (the hashing the README documents). Use the same function
    everywhere the id appears (candidates, events, catalog) so they match::

        >>> stable_id("sku-123") == int(hashlib.sha256(b"sku-123").hexdigest()[:16], 16)
        True
    """
    return int.from_bytes(hashlib.sha256(value.encode("utf-8")).digest()[:8], "big")


class TactfulError(Exception):
    """A call failed and could not fail open: the request is wrong (``INVALID_ARGUMENT``, a
    missing token, ...), or an events or profile call could not be done. ``code`` is the gRPC
    status code and ``details`` the server's message (which names the field at fault)."""

    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


@dataclass(frozen=True)
class Item:
    """One item of a ranking."""

    item_id: int
    score: float
    upstream_position: int
    """0-based position in the candidate list that was sent."""
    reason: str = ""
    """The plain reason shown to the user, e.g. "Because you viewed Nova X phone"; empty when
    the ranking failed open."""
    reason_code: str = ""
    """e.g. ``BECAUSE_YOU_VIEWED``; ``UPSTREAM`` when the ranking failed open."""
    dimensions: Tuple[str, ...] = ()
    """The data the reason relied on, e.g. ``("browsing",)``."""


@dataclass(frozen=True)
class Dropped:
    """A candidate a rule removed (only with ``explain=True``)."""

    item_id: int
    rule: str
    """e.g. ``CONSENT``, ``BLOCKED_BRAND``."""
    detail: str = ""


@dataclass
class RankResult:
    """What :meth:`Tactful.rank` returns: the re-ranked list, or the upstream order marked
    degraded.

    ``degraded_reason`` is the server's (``DEADLINE``, ``BUDGET``, ``OVERLOAD``, ``INTERNAL``,
    ``STATE``) when the server failed open, and ``CLIENT_`` followed by the gRPC code
    (``CLIENT_UNAVAILABLE``, ``CLIENT_DEADLINE_EXCEEDED``, ...) when the client did, because
    the sidecar could not be reached or answered late; then ``error`` says why."""

    items: List[Item]
    degraded: bool = False
    degraded_reason: str = ""
    policy_version: str = ""
    suggested_k: int = 0
    lifecycle_stage: str = ""
    request_id: str = ""
    dropped: List[Dropped] = field(default_factory=list)
    error: Optional[str] = None
    response: Optional[ranker_pb2.RankResponse] = None
    """The server's answer as it came (``None`` when the client failed open)."""

    @property
    def item_ids(self) -> List[int]:
        """The item ids, in the order to show them."""
        return [i.item_id for i in self.items]


CandidateLike = Union[ranker_pb2.Candidate, Mapping[str, Any]]
EventLike = Union[events_pb2.Event, Mapping[str, Any]]


def _enum_suffix(enum: Any, number: int, prefix: str) -> str:
    try:
        return enum.Name(number)[len(prefix):]
    except ValueError:
        return str(number)


def _dimension(value: Union[str, int]) -> Union[str, int]:
    """A data dimension as the protobuf JSON mapping takes it, from ``"browsing"``,
    ``"DATA_DIMENSION_BROWSING"`` or its number."""
    if isinstance(value, str) and not value.startswith("DATA_DIMENSION_"):
        return "DATA_DIMENSION_" + value.upper()
    return value


def f32le(vector: Any) -> bytes:
    """A vector as ``embedding_f32le`` takes it: little-endian float32, 4 bytes per value.
    A numpy array goes through ``astype('<f4').tobytes()``; a sequence of numbers through
    ``struct``. One-dimensional only."""
    if hasattr(vector, "astype"):
        if getattr(vector, "ndim", 1) != 1:
            raise ValueError(f"an embedding must be one-dimensional, not of shape {vector.shape}")
        return vector.astype("<f4").tobytes()
    values = [float(v) for v in vector]
    return struct.pack(f"<{len(values)}f", *values)


def candidate(value: CandidateLike, embedding: Any = None) -> ranker_pb2.Candidate:
    """A ``tactful.v1.Candidate`` from a message or a mapping.

    A mapping may use the proto field names or the protobuf JSON mapping's (``item_id`` or
    ``itemId``; ids as numbers or strings; evidence as ``"browsing"``,
    ``"DATA_DIMENSION_BROWSING"`` or numbers), so a candidate read from
    ``examples/candidates.json`` or a grpcurl payload works as it is. An ``embedding`` given
    here, or under the mapping's ``"embedding"`` key as a numpy array or a list, is sent in the
    bytes form ``embedding_f32le``."""
    if isinstance(value, ranker_pb2.Candidate):
        out = ranker_pb2.Candidate()
        out.CopyFrom(value)
    elif isinstance(value, Mapping):
        fields = dict(value)
        inline = fields.pop("embedding", None)
        if embedding is None and inline is not None:
            embedding = inline
        if "evidence" in fields:
            fields["evidence"] = [_dimension(d) for d in fields["evidence"]]
        out = json_format.ParseDict(fields, ranker_pb2.Candidate())
    else:
        raise TypeError(f"a candidate is a Candidate message or a mapping, not {type(value).__name__}")
    if embedding is not None:
        if out.embedding_f32le:
            raise ValueError(f"candidate {out.item_id}: an embedding is given twice")
        out.embedding_f32le = f32le(embedding)
    return out


def event(kind: str, item_id: int = 0, *, at_ms: Optional[int] = None, **fields: Any) -> events_pb2.Event:
    """An event of ``kind`` (``"impression"``, ``"click"``, ``"cart"``, ``"favorite"``,
    ``"purchase"``, ``"search"``, ``"not_interested"``, ``"fewer_like_this"``,
    ``"block_brand"``, ``"unblock_brand"``, ``"block_shop"``, ``"unblock_shop"``), at ``at_ms``
    (unix milliseconds; now if not given). Other fields are the ``Event`` message's:
    ``category_id``, ``brand_id``, ``shop_id``, ``price``, ``surface``, ``source`` (a data
    dimension), ``expires_at_ms``, ``title``. The user is set by :meth:`Tactful.record`."""
    if "source" in fields:
        fields["source"] = _dimension(fields["source"])
    message = json_format.ParseDict(fields, events_pb2.Event())
    message.type = events_pb2.EventType.Value("EVENT_TYPE_" + kind.upper())
    message.item_id = item_id
    message.at_ms = int(time.time() * 1000) if at_ms is None else at_ms
    return message


class Tactful:
    """A client of one tactful server.

    ``target`` is ``host:port`` (default the sidecar's ``127.0.0.1:50051``); pass
    ``credentials`` (``grpc.ssl_channel_credentials(...)``) for TLS and ``token`` when the server
    requires one (Events and Profile do once tokens are configured). The channel keeps its
    connection alive with HTTP/2 PINGs every 30 s, as the server does, and is opened lazily::

        client = Tactful()
        result = client.rank("alice", candidates, k=8)
        for item in result.items:
            print(item.item_id, item.reason)

    Use it as a context manager, or call :meth:`close`, to close the channel.
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        rank_timeout: float = DEFAULT_RANK_TIMEOUT,
        timeout: float = DEFAULT_TIMEOUT,
        token: Optional[str] = None,
        credentials: Optional[grpc.ChannelCredentials] = None,
        options: Sequence[Tuple[str, Any]] = (),
        channel: Optional[grpc.Channel] = None,
    ):
        self.rank_timeout = rank_timeout
        self.timeout = timeout
        self._metadata: Tuple[Tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token else ()
        )
        if channel is None:
            opts = dict(
                [
                    ("grpc.keepalive_time_ms", 30_000),
                    ("grpc.keepalive_timeout_ms", 10_000),
                    ("grpc.keepalive_permit_without_calls", 1),
                    ("grpc.http2.max_pings_without_data", 0),
                    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                    ("grpc.enable_retries", 1),
                    ("grpc.service_config", _SERVICE_CONFIG),
                ]
            )
            opts.update(dict(options))
            if credentials is None:
                channel = grpc.insecure_channel(target, options=list(opts.items()))
            else:
                channel = grpc.secure_channel(target, credentials, options=list(opts.items()))
        self.channel = channel
        self._ranker = ranker_pb2_grpc.RankerStub(channel)
        self._events = events_pb2_grpc.EventsStub(channel)
        self._profile = profile_pb2_grpc.ProfileStub(channel)

    def __enter__(self) -> "Tactful":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Closes the channel."""
        self.channel.close()

    def wait_ready(self, timeout: float = 5.0) -> bool:
        """Connects now rather than on the first call; True once connected, False if not
        within ``timeout`` seconds. Optional: a call connects by itself."""
        try:
            grpc.channel_ready_future(self.channel).result(timeout=timeout)
            return True
        except grpc.FutureTimeoutError:
            return False

    # -- ranking -----------------------------------------------------------------------------

    def rank(
        self,
        user_id: str,
        candidates: Sequence[CandidateLike],
        *,
        embeddings: Any = None,
        k: int = 0,
        policy: str = "",
        explain: bool = False,
        surface: str = "",
        locale: str = "",
        region: str = "",
        utc_offset_minutes: int = 0,
        shown: int = 0,
        all_shown: bool = False,
        request_id: str = "",
        timeout: Optional[float] = None,
    ) -> RankResult:
        """Re-ranks ``candidates`` (in upstream order, best first) for ``user_id``.

        ``candidates`` are ``Candidate`` messages or mappings (see :func:`candidate`);
        ``embeddings``, if given, is an N x d array-like whose row i is candidate i's vector,
        sent as little-endian float32 bytes (``embedding_f32le``), the cheapest form. ``k`` is
        how many to return (0: every survivor); ``shown``/``all_shown`` record the first N (or
        all) returned items as impressions.

        Never raises for an unreachable, overloaded or late server: it returns the candidates in
        upstream order (the first ``k``), ``degraded=True``, within ``timeout`` (default
        :data:`DEFAULT_RANK_TIMEOUT`). Unlike the server's own fail-open, this one cannot drop
        the user's blocked brands or unconsented items: the server is not there to know them.
        Raises :class:`TactfulError` for a request the server refuses (``INVALID_ARGUMENT``
        naming the field, a missing token), and ``ValueError``/``TypeError`` for candidates
        that cannot be built."""
        built = [
            candidate(c, None if embeddings is None else embeddings[i])
            for i, c in enumerate(candidates)
        ]
        request = ranker_pb2.RankRequest(
            user_id=user_id,
            request_id=request_id,
            surface=surface,
            context=ranker_pb2.Context(
                locale=locale, region=region, utc_offset_minutes=utc_offset_minutes
            ),
            candidates=built,
            k=k,
            policy=policy,
            explain=explain,
            shown=shown,
            all_shown=all_shown,
        )
        return self.rank_request(request, timeout=timeout)

    def rank_request(self, request: ranker_pb2.RankRequest, *, timeout: Optional[float] = None) -> RankResult:
        """:meth:`rank` for a ready ``RankRequest`` (e.g. one parsed from a grpcurl payload with
        ``google.protobuf.json_format.Parse``), with the same fail-open behaviour."""
        try:
            response = self._ranker.Rank(
                request,
                timeout=self.rank_timeout if timeout is None else timeout,
                metadata=self._metadata,
            )
        except grpc.RpcError as e:
            code, details = e.code(), e.details() or ""
            if code in _CALLER_ERRORS:
                raise TactfulError(code, details) from None
            return _upstream_order(request, f"CLIENT_{code.name}", f"{code.name}: {details}")
        return _result(response)

    # -- events ------------------------------------------------------------------------------

    def record(
        self, user_id: str, events: Iterable[EventLike], *, timeout: Optional[float] = None
    ) -> events_pb2.RecordResponse:
        """Records ``events`` (from :func:`event`, ``Event`` messages or mappings in the
        protobuf JSON mapping) for ``user_id``; returns once the explicit ones (feedback,
        consent, purchases) are durable. ``applied`` counts those taken, ``rejected`` names
        each refused one and why.

        Not retried: an impression or a click sent twice counts twice. The server answers
        ``UNAVAILABLE`` (raised as :class:`TactfulError`) when its store cannot make the batch
        durable; resending a batch of explicit feedback (blocks, "not interested") is safe."""
        batch = events_pb2.RecordRequest()
        for e in events:
            message = batch.events.add()
            if isinstance(e, events_pb2.Event):
                message.CopyFrom(e)
            else:
                fields = dict(e)
                if "source" in fields:
                    fields["source"] = _dimension(fields["source"])
                json_format.ParseDict(fields, message)
            if not message.user_id:
                message.user_id = user_id
        return self._call(self._events.Record, batch, timeout)

    # -- the preference centre ---------------------------------------------------------------

    def profile(self, user_id: str, *, timeout: Optional[float] = None) -> profile_pb2.UserProfile:
        """Everything held about the user: blocks, consent, interests, fatigue, lifecycle."""
        return self._call(self._profile.Get, profile_pb2.GetProfileRequest(user_id=user_id), timeout)

    def set_consent(
        self,
        user_id: str,
        *,
        grant: Iterable[str] = (),
        deny: Iterable[str] = (),
        personalization: Optional[bool] = None,
        timeout: Optional[float] = None,
    ) -> profile_pb2.UserProfile:
        """Grants and denies data dimensions (``"location"``, ``"browsing"``, ...) and switches
        personalisation on or off (``None`` leaves it)."""
        request = profile_pb2.SetConsentRequest(user_id=user_id)
        for names, granted in ((grant, True), (deny, False)):
            for name in names:
                request.dimensions.add(
                    dimension=common_pb2.DataDimension.Value(str(_dimension(name))), granted=granted
                )
        if personalization is not None:
            request.personalization = personalization
        return self._call(self._profile.SetConsent, request, timeout)

    def update_interests(
        self,
        user_id: str,
        updates: Iterable[Tuple[str, int, float]],
        *,
        timeout: Optional[float] = None,
    ) -> profile_pb2.UserProfile:
        """Adds, re-weights or removes interest tags: each update is ``(kind, id, weight)`` with
        kind ``"category"`` or ``"brand"`` and weight in [0, 1] (0 removes the tag)."""
        request = profile_pb2.UpdateInterestsRequest(user_id=user_id)
        for kind, tag_id, weight in updates:
            request.updates.add(
                kind=profile_pb2.TagKind.Value("TAG_KIND_" + kind.upper()), id=tag_id, weight=weight
            )
        return self._call(self._profile.UpdateInterests, request, timeout)

    def undo(self, user_id: str, kind: str, target_id: int, *, timeout: Optional[float] = None) -> profile_pb2.UserProfile:
        """Takes back a ``"block_brand"``, ``"block_shop"``, ``"not_interested"``,
        ``"fewer_like_this_category"`` or ``"fewer_like_this_brand"``."""
        request = profile_pb2.UndoRequest(
            user_id=user_id, kind=profile_pb2.UndoKind.Value("UNDO_KIND_" + kind.upper()), id=target_id
        )
        return self._call(self._profile.Undo, request, timeout)

    def forget(self, user_id: str, *, timeout: Optional[float] = None) -> None:
        """Erases everything held about the user (memory, log, snapshots, Redis)."""
        self._call(self._profile.Forget, profile_pb2.ForgetRequest(user_id=user_id), timeout)

    def _call(self, method: Any, request: Any, timeout: Optional[float]) -> Any:
        try:
            return method(request, timeout=self.timeout if timeout is None else timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            raise TactfulError(e.code(), e.details() or "") from None


def _upstream_order(request: ranker_pb2.RankRequest, reason: str, error: str) -> RankResult:
    """The candidates as they were sent (the first ``k``), marked degraded."""
    candidates = list(request.candidates)
    if request.k:
        candidates = candidates[: request.k]
    return RankResult(
        items=[
            Item(item_id=c.item_id, score=c.score, upstream_position=i, reason_code="UPSTREAM")
            for i, c in enumerate(candidates)
        ],
        degraded=True,
        degraded_reason=reason,
        request_id=request.request_id,
        error=error,
    )


def _result(r: ranker_pb2.RankResponse) -> RankResult:
    return RankResult(
        items=[
            Item(
                item_id=i.item_id,
                score=i.score,
                upstream_position=i.upstream_position,
                reason=i.reason.text,
                reason_code=_enum_suffix(ranker_pb2.ReasonCode, i.reason.code, "REASON_CODE_"),
                dimensions=tuple(
                    _enum_suffix(common_pb2.DataDimension, d, "DATA_DIMENSION_").lower()
                    for d in i.reason.dimensions
                ),
            )
            for i in r.items
        ],
        degraded=r.degraded,
        degraded_reason=(
            _enum_suffix(ranker_pb2.DegradedReason, r.degraded_reason, "DEGRADED_REASON_")
            if r.degraded
            else ""
        ),
        policy_version=r.policy_version,
        suggested_k=r.suggested_k,
        lifecycle_stage=_enum_suffix(common_pb2.LifecycleStage, r.lifecycle_stage, "LIFECYCLE_STAGE_"),
        request_id=r.request_id,
        dropped=[
            Dropped(item_id=d.item_id, rule=_enum_suffix(ranker_pb2.DropRule, d.rule, "DROP_RULE_"), detail=d.detail)
            for d in r.dropped
        ],
        response=r,
    )
