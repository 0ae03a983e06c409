from tactful.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TagKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TAG_KIND_UNSPECIFIED: _ClassVar[TagKind]
    TAG_KIND_CATEGORY: _ClassVar[TagKind]
    TAG_KIND_BRAND: _ClassVar[TagKind]

class TagSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TAG_SOURCE_UNSPECIFIED: _ClassVar[TagSource]
    TAG_SOURCE_USER: _ClassVar[TagSource]
    TAG_SOURCE_LEARNED: _ClassVar[TagSource]

class UndoKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UNDO_KIND_UNSPECIFIED: _ClassVar[UndoKind]
    UNDO_KIND_BLOCK_BRAND: _ClassVar[UndoKind]
    UNDO_KIND_BLOCK_SHOP: _ClassVar[UndoKind]
    UNDO_KIND_NOT_INTERESTED: _ClassVar[UndoKind]
    UNDO_KIND_FEWER_LIKE_THIS_CATEGORY: _ClassVar[UndoKind]
    UNDO_KIND_FEWER_LIKE_THIS_BRAND: _ClassVar[UndoKind]
TAG_KIND_UNSPECIFIED: TagKind
TAG_KIND_CATEGORY: TagKind
TAG_KIND_BRAND: TagKind
TAG_SOURCE_UNSPECIFIED: TagSource
TAG_SOURCE_USER: TagSource
TAG_SOURCE_LEARNED: TagSource
UNDO_KIND_UNSPECIFIED: UndoKind
UNDO_KIND_BLOCK_BRAND: UndoKind
UNDO_KIND_BLOCK_SHOP: UndoKind
UNDO_KIND_NOT_INTERESTED: UndoKind
UNDO_KIND_FEWER_LIKE_THIS_CATEGORY: UndoKind
UNDO_KIND_FEWER_LIKE_THIS_BRAND: UndoKind

class ForgetRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class ForgetResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetProfileRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class SetConsentRequest(_message.Message):
    __slots__ = ("user_id", "dimensions", "personalization", "sensitive_categories")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    PERSONALIZATION_FIELD_NUMBER: _ClassVar[int]
    SENSITIVE_CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    dimensions: _containers.RepeatedCompositeFieldContainer[_common_pb2.DimensionConsent]
    personalization: bool
    sensitive_categories: _containers.RepeatedCompositeFieldContainer[SensitiveConsent]
    def __init__(self, user_id: _Optional[str] = ..., dimensions: _Optional[_Iterable[_Union[_common_pb2.DimensionConsent, _Mapping]]] = ..., personalization: _Optional[bool] = ..., sensitive_categories: _Optional[_Iterable[_Union[SensitiveConsent, _Mapping]]] = ...) -> None: ...

class SensitiveConsent(_message.Message):
    __slots__ = ("category_id", "granted")
    CATEGORY_ID_FIELD_NUMBER: _ClassVar[int]
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    category_id: int
    granted: bool
    def __init__(self, category_id: _Optional[int] = ..., granted: _Optional[bool] = ...) -> None: ...

class UpdateInterestsRequest(_message.Message):
    __slots__ = ("user_id", "updates")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    updates: _containers.RepeatedCompositeFieldContainer[InterestUpdate]
    def __init__(self, user_id: _Optional[str] = ..., updates: _Optional[_Iterable[_Union[InterestUpdate, _Mapping]]] = ...) -> None: ...

class InterestUpdate(_message.Message):
    __slots__ = ("kind", "id", "weight", "label")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    kind: TagKind
    id: int
    weight: float
    label: str
    def __init__(self, kind: _Optional[_Union[TagKind, str]] = ..., id: _Optional[int] = ..., weight: _Optional[float] = ..., label: _Optional[str] = ...) -> None: ...

class UndoRequest(_message.Message):
    __slots__ = ("user_id", "kind", "id")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    kind: UndoKind
    id: int
    def __init__(self, user_id: _Optional[str] = ..., kind: _Optional[_Union[UndoKind, str]] = ..., id: _Optional[int] = ...) -> None: ...

class UserProfile(_message.Message):
    __slots__ = ("user_id", "known", "blocked_brands", "blocked_shops", "not_interested", "consent", "personalization", "lifecycle_stage", "fatigue", "first_seen_ms", "last_active_ms", "interests", "muted_categories", "muted_brands", "cooling_off", "sensitive_categories", "used_recently")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_BRANDS_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_SHOPS_FIELD_NUMBER: _ClassVar[int]
    NOT_INTERESTED_FIELD_NUMBER: _ClassVar[int]
    CONSENT_FIELD_NUMBER: _ClassVar[int]
    PERSONALIZATION_FIELD_NUMBER: _ClassVar[int]
    LIFECYCLE_STAGE_FIELD_NUMBER: _ClassVar[int]
    FATIGUE_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_ACTIVE_MS_FIELD_NUMBER: _ClassVar[int]
    INTERESTS_FIELD_NUMBER: _ClassVar[int]
    MUTED_CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    MUTED_BRANDS_FIELD_NUMBER: _ClassVar[int]
    COOLING_OFF_FIELD_NUMBER: _ClassVar[int]
    SENSITIVE_CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    USED_RECENTLY_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    known: bool
    blocked_brands: _containers.RepeatedScalarFieldContainer[int]
    blocked_shops: _containers.RepeatedScalarFieldContainer[int]
    not_interested: _containers.RepeatedCompositeFieldContainer[NotInterested]
    consent: _containers.RepeatedCompositeFieldContainer[_common_pb2.DimensionConsent]
    personalization: bool
    lifecycle_stage: _common_pb2.LifecycleStage
    fatigue: _containers.RepeatedCompositeFieldContainer[ItemFatigue]
    first_seen_ms: int
    last_active_ms: int
    interests: _containers.RepeatedCompositeFieldContainer[InterestTag]
    muted_categories: _containers.RepeatedCompositeFieldContainer[Muted]
    muted_brands: _containers.RepeatedCompositeFieldContainer[Muted]
    cooling_off: _containers.RepeatedCompositeFieldContainer[CoolingOff]
    sensitive_categories: _containers.RepeatedScalarFieldContainer[int]
    used_recently: _containers.RepeatedScalarFieldContainer[_common_pb2.DataDimension]
    def __init__(self, user_id: _Optional[str] = ..., known: _Optional[bool] = ..., blocked_brands: _Optional[_Iterable[int]] = ..., blocked_shops: _Optional[_Iterable[int]] = ..., not_interested: _Optional[_Iterable[_Union[NotInterested, _Mapping]]] = ..., consent: _Optional[_Iterable[_Union[_common_pb2.DimensionConsent, _Mapping]]] = ..., personalization: _Optional[bool] = ..., lifecycle_stage: _Optional[_Union[_common_pb2.LifecycleStage, str]] = ..., fatigue: _Optional[_Iterable[_Union[ItemFatigue, _Mapping]]] = ..., first_seen_ms: _Optional[int] = ..., last_active_ms: _Optional[int] = ..., interests: _Optional[_Iterable[_Union[InterestTag, _Mapping]]] = ..., muted_categories: _Optional[_Iterable[_Union[Muted, _Mapping]]] = ..., muted_brands: _Optional[_Iterable[_Union[Muted, _Mapping]]] = ..., cooling_off: _Optional[_Iterable[_Union[CoolingOff, _Mapping]]] = ..., sensitive_categories: _Optional[_Iterable[int]] = ..., used_recently: _Optional[_Iterable[_Union[_common_pb2.DataDimension, str]]] = ...) -> None: ...

class NotInterested(_message.Message):
    __slots__ = ("item_id", "until_ms")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    item_id: int
    until_ms: int
    def __init__(self, item_id: _Optional[int] = ..., until_ms: _Optional[int] = ...) -> None: ...

class ItemFatigue(_message.Message):
    __slots__ = ("item_id", "ignored_impressions")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    IGNORED_IMPRESSIONS_FIELD_NUMBER: _ClassVar[int]
    item_id: int
    ignored_impressions: float
    def __init__(self, item_id: _Optional[int] = ..., ignored_impressions: _Optional[float] = ...) -> None: ...

class InterestTag(_message.Message):
    __slots__ = ("kind", "id", "label", "weight", "source", "learned_from")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    LEARNED_FROM_FIELD_NUMBER: _ClassVar[int]
    kind: TagKind
    id: int
    label: str
    weight: float
    source: TagSource
    learned_from: _containers.RepeatedScalarFieldContainer[_common_pb2.DataDimension]
    def __init__(self, kind: _Optional[_Union[TagKind, str]] = ..., id: _Optional[int] = ..., label: _Optional[str] = ..., weight: _Optional[float] = ..., source: _Optional[_Union[TagSource, str]] = ..., learned_from: _Optional[_Iterable[_Union[_common_pb2.DataDimension, str]]] = ...) -> None: ...

class Muted(_message.Message):
    __slots__ = ("id", "strength")
    ID_FIELD_NUMBER: _ClassVar[int]
    STRENGTH_FIELD_NUMBER: _ClassVar[int]
    id: int
    strength: float
    def __init__(self, id: _Optional[int] = ..., strength: _Optional[float] = ...) -> None: ...

class CoolingOff(_message.Message):
    __slots__ = ("item_id", "category_id", "title", "bought_at_ms", "substitutes_until_ms", "price_drops_until_ms")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    BOUGHT_AT_MS_FIELD_NUMBER: _ClassVar[int]
    SUBSTITUTES_UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    PRICE_DROPS_UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    item_id: int
    category_id: int
    title: str
    bought_at_ms: int
    substitutes_until_ms: int
    price_drops_until_ms: int
    def __init__(self, item_id: _Optional[int] = ..., category_id: _Optional[int] = ..., title: _Optional[str] = ..., bought_at_ms: _Optional[int] = ..., substitutes_until_ms: _Optional[int] = ..., price_drops_until_ms: _Optional[int] = ...) -> None: ...
