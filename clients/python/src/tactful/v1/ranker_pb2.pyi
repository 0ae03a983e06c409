from tactful.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DiversityMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIVERSITY_METHOD_UNSPECIFIED: _ClassVar[DiversityMethod]
    DIVERSITY_METHOD_MMR: _ClassVar[DiversityMethod]
    DIVERSITY_METHOD_DPP: _ClassVar[DiversityMethod]
    DIVERSITY_METHOD_SCORE: _ClassVar[DiversityMethod]

class DegradedReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEGRADED_REASON_UNSPECIFIED: _ClassVar[DegradedReason]
    DEGRADED_REASON_DEADLINE: _ClassVar[DegradedReason]
    DEGRADED_REASON_BUDGET: _ClassVar[DegradedReason]
    DEGRADED_REASON_OVERLOAD: _ClassVar[DegradedReason]
    DEGRADED_REASON_INTERNAL: _ClassVar[DegradedReason]
    DEGRADED_REASON_STATE: _ClassVar[DegradedReason]

class ReasonCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REASON_CODE_UNSPECIFIED: _ClassVar[ReasonCode]
    REASON_CODE_RELEVANT: _ClassVar[ReasonCode]
    REASON_CODE_BECAUSE_YOU_VIEWED: _ClassVar[ReasonCode]
    REASON_CODE_BECAUSE_YOU_FAVORITED: _ClassVar[ReasonCode]
    REASON_CODE_BECAUSE_YOU_CARTED: _ClassVar[ReasonCode]
    REASON_CODE_BECAUSE_YOU_BOUGHT: _ClassVar[ReasonCode]
    REASON_CODE_BECAUSE_YOU_SEARCHED: _ClassVar[ReasonCode]
    REASON_CODE_BASED_ON_ACTIVITY: _ClassVar[ReasonCode]
    REASON_CODE_TRENDING: _ClassVar[ReasonCode]
    REASON_CODE_EDITORIAL: _ClassVar[ReasonCode]
    REASON_CODE_DIVERSITY: _ClassVar[ReasonCode]
    REASON_CODE_UPSTREAM: _ClassVar[ReasonCode]
    REASON_CODE_NEARBY: _ClassVar[ReasonCode]
    REASON_CODE_SOCIAL: _ClassVar[ReasonCode]
    REASON_CODE_COMPLEMENT: _ClassVar[ReasonCode]
    REASON_CODE_INTEREST: _ClassVar[ReasonCode]
    REASON_CODE_CONTEXT: _ClassVar[ReasonCode]
    REASON_CODE_EXPLORATION: _ClassVar[ReasonCode]

class DropRule(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DROP_RULE_UNSPECIFIED: _ClassVar[DropRule]
    DROP_RULE_NOT_INTERESTED: _ClassVar[DropRule]
    DROP_RULE_BLOCKED_BRAND: _ClassVar[DropRule]
    DROP_RULE_BLOCKED_SHOP: _ClassVar[DropRule]
    DROP_RULE_CONSENT: _ClassVar[DropRule]
    DROP_RULE_FREQUENCY_CAP: _ClassVar[DropRule]
    DROP_RULE_COOLING_OFF: _ClassVar[DropRule]
    DROP_RULE_SENSITIVE: _ClassVar[DropRule]
    DROP_RULE_OVERLOAD: _ClassVar[DropRule]
DIVERSITY_METHOD_UNSPECIFIED: DiversityMethod
DIVERSITY_METHOD_MMR: DiversityMethod
DIVERSITY_METHOD_DPP: DiversityMethod
DIVERSITY_METHOD_SCORE: DiversityMethod
DEGRADED_REASON_UNSPECIFIED: DegradedReason
DEGRADED_REASON_DEADLINE: DegradedReason
DEGRADED_REASON_BUDGET: DegradedReason
DEGRADED_REASON_OVERLOAD: DegradedReason
DEGRADED_REASON_INTERNAL: DegradedReason
DEGRADED_REASON_STATE: DegradedReason
REASON_CODE_UNSPECIFIED: ReasonCode
REASON_CODE_RELEVANT: ReasonCode
REASON_CODE_BECAUSE_YOU_VIEWED: ReasonCode
REASON_CODE_BECAUSE_YOU_FAVORITED: ReasonCode
REASON_CODE_BECAUSE_YOU_CARTED: ReasonCode
REASON_CODE_BECAUSE_YOU_BOUGHT: ReasonCode
REASON_CODE_BECAUSE_YOU_SEARCHED: ReasonCode
REASON_CODE_BASED_ON_ACTIVITY: ReasonCode
REASON_CODE_TRENDING: ReasonCode
REASON_CODE_EDITORIAL: ReasonCode
REASON_CODE_DIVERSITY: ReasonCode
REASON_CODE_UPSTREAM: ReasonCode
REASON_CODE_NEARBY: ReasonCode
REASON_CODE_SOCIAL: ReasonCode
REASON_CODE_COMPLEMENT: ReasonCode
REASON_CODE_INTEREST: ReasonCode
REASON_CODE_CONTEXT: ReasonCode
REASON_CODE_EXPLORATION: ReasonCode
DROP_RULE_UNSPECIFIED: DropRule
DROP_RULE_NOT_INTERESTED: DropRule
DROP_RULE_BLOCKED_BRAND: DropRule
DROP_RULE_BLOCKED_SHOP: DropRule
DROP_RULE_CONSENT: DropRule
DROP_RULE_FREQUENCY_CAP: DropRule
DROP_RULE_COOLING_OFF: DropRule
DROP_RULE_SENSITIVE: DropRule
DROP_RULE_OVERLOAD: DropRule

class RankRequest(_message.Message):
    __slots__ = ("user_id", "request_id", "surface", "context", "candidates", "k", "policy", "explain", "strict", "consent", "diversity", "shown", "all_shown")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SURFACE_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    STRICT_FIELD_NUMBER: _ClassVar[int]
    CONSENT_FIELD_NUMBER: _ClassVar[int]
    DIVERSITY_FIELD_NUMBER: _ClassVar[int]
    SHOWN_FIELD_NUMBER: _ClassVar[int]
    ALL_SHOWN_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    request_id: str
    surface: str
    context: Context
    candidates: _containers.RepeatedCompositeFieldContainer[Candidate]
    k: int
    policy: str
    explain: bool
    strict: bool
    consent: _common_pb2.ConsentOverride
    diversity: DiversityOptions
    shown: int
    all_shown: bool
    def __init__(self, user_id: _Optional[str] = ..., request_id: _Optional[str] = ..., surface: _Optional[str] = ..., context: _Optional[_Union[Context, _Mapping]] = ..., candidates: _Optional[_Iterable[_Union[Candidate, _Mapping]]] = ..., k: _Optional[int] = ..., policy: _Optional[str] = ..., explain: _Optional[bool] = ..., strict: _Optional[bool] = ..., consent: _Optional[_Union[_common_pb2.ConsentOverride, _Mapping]] = ..., diversity: _Optional[_Union[DiversityOptions, _Mapping]] = ..., shown: _Optional[int] = ..., all_shown: _Optional[bool] = ...) -> None: ...

class DiversityOptions(_message.Message):
    __slots__ = ("method", "weight", "exploration_share", "calibration", "long_tail")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    EXPLORATION_SHARE_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_FIELD_NUMBER: _ClassVar[int]
    LONG_TAIL_FIELD_NUMBER: _ClassVar[int]
    method: DiversityMethod
    weight: float
    exploration_share: float
    calibration: float
    long_tail: float
    def __init__(self, method: _Optional[_Union[DiversityMethod, str]] = ..., weight: _Optional[float] = ..., exploration_share: _Optional[float] = ..., calibration: _Optional[float] = ..., long_tail: _Optional[float] = ...) -> None: ...

class Context(_message.Message):
    __slots__ = ("now_ms", "region", "locale", "location", "utc_offset_minutes")
    NOW_MS_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    LOCALE_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    UTC_OFFSET_MINUTES_FIELD_NUMBER: _ClassVar[int]
    now_ms: int
    region: str
    locale: str
    location: Location
    utc_offset_minutes: int
    def __init__(self, now_ms: _Optional[int] = ..., region: _Optional[str] = ..., locale: _Optional[str] = ..., location: _Optional[_Union[Location, _Mapping]] = ..., utc_offset_minutes: _Optional[int] = ...) -> None: ...

class Location(_message.Message):
    __slots__ = ("latitude", "longitude")
    LATITUDE_FIELD_NUMBER: _ClassVar[int]
    LONGITUDE_FIELD_NUMBER: _ClassVar[int]
    latitude: float
    longitude: float
    def __init__(self, latitude: _Optional[float] = ..., longitude: _Optional[float] = ...) -> None: ...

class Candidate(_message.Message):
    __slots__ = ("item_id", "score", "category_id", "brand_id", "shop_id", "price", "popularity", "embedding", "evidence", "sponsored", "title", "anchor_item_id", "anchor_title", "cross_platform_seen_ms", "embedding_f32le")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_ID_FIELD_NUMBER: _ClassVar[int]
    BRAND_ID_FIELD_NUMBER: _ClassVar[int]
    SHOP_ID_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    POPULARITY_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    SPONSORED_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    ANCHOR_ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    ANCHOR_TITLE_FIELD_NUMBER: _ClassVar[int]
    CROSS_PLATFORM_SEEN_MS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_F32LE_FIELD_NUMBER: _ClassVar[int]
    item_id: int
    score: float
    category_id: int
    brand_id: int
    shop_id: int
    price: float
    popularity: float
    embedding: _containers.RepeatedScalarFieldContainer[float]
    evidence: _containers.RepeatedScalarFieldContainer[_common_pb2.DataDimension]
    sponsored: bool
    title: str
    anchor_item_id: int
    anchor_title: str
    cross_platform_seen_ms: int
    embedding_f32le: bytes
    def __init__(self, item_id: _Optional[int] = ..., score: _Optional[float] = ..., category_id: _Optional[int] = ..., brand_id: _Optional[int] = ..., shop_id: _Optional[int] = ..., price: _Optional[float] = ..., popularity: _Optional[float] = ..., embedding: _Optional[_Iterable[float]] = ..., evidence: _Optional[_Iterable[_Union[_common_pb2.DataDimension, str]]] = ..., sponsored: _Optional[bool] = ..., title: _Optional[str] = ..., anchor_item_id: _Optional[int] = ..., anchor_title: _Optional[str] = ..., cross_platform_seen_ms: _Optional[int] = ..., embedding_f32le: _Optional[bytes] = ...) -> None: ...

class RankResponse(_message.Message):
    __slots__ = ("items", "dropped", "degraded", "degraded_reason", "suggested_k", "lifecycle_stage", "policy_version", "request_id")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_REASON_FIELD_NUMBER: _ClassVar[int]
    SUGGESTED_K_FIELD_NUMBER: _ClassVar[int]
    LIFECYCLE_STAGE_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[RankedItem]
    dropped: _containers.RepeatedCompositeFieldContainer[DroppedItem]
    degraded: bool
    degraded_reason: DegradedReason
    suggested_k: int
    lifecycle_stage: _common_pb2.LifecycleStage
    policy_version: str
    request_id: str
    def __init__(self, items: _Optional[_Iterable[_Union[RankedItem, _Mapping]]] = ..., dropped: _Optional[_Iterable[_Union[DroppedItem, _Mapping]]] = ..., degraded: _Optional[bool] = ..., degraded_reason: _Optional[_Union[DegradedReason, str]] = ..., suggested_k: _Optional[int] = ..., lifecycle_stage: _Optional[_Union[_common_pb2.LifecycleStage, str]] = ..., policy_version: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class RankedItem(_message.Message):
    __slots__ = ("item_id", "score", "upstream_position", "reason", "breakdown")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_POSITION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    BREAKDOWN_FIELD_NUMBER: _ClassVar[int]
    item_id: int
    score: float
    upstream_position: int
    reason: Reason
    breakdown: _containers.RepeatedCompositeFieldContainer[ScoreComponent]
    def __init__(self, item_id: _Optional[int] = ..., score: _Optional[float] = ..., upstream_position: _Optional[int] = ..., reason: _Optional[_Union[Reason, _Mapping]] = ..., breakdown: _Optional[_Iterable[_Union[ScoreComponent, _Mapping]]] = ...) -> None: ...

class Reason(_message.Message):
    __slots__ = ("code", "text", "dimensions")
    CODE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    code: ReasonCode
    text: str
    dimensions: _containers.RepeatedScalarFieldContainer[_common_pb2.DataDimension]
    def __init__(self, code: _Optional[_Union[ReasonCode, str]] = ..., text: _Optional[str] = ..., dimensions: _Optional[_Iterable[_Union[_common_pb2.DataDimension, str]]] = ...) -> None: ...

class ScoreComponent(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: float
    def __init__(self, name: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...

class DroppedItem(_message.Message):
    __slots__ = ("item_id", "rule", "detail")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    item_id: int
    rule: DropRule
    detail: str
    def __init__(self, item_id: _Optional[int] = ..., rule: _Optional[_Union[DropRule, str]] = ..., detail: _Optional[str] = ...) -> None: ...
