from tactful.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_TYPE_UNSPECIFIED: _ClassVar[EventType]
    EVENT_TYPE_IMPRESSION: _ClassVar[EventType]
    EVENT_TYPE_CLICK: _ClassVar[EventType]
    EVENT_TYPE_CART: _ClassVar[EventType]
    EVENT_TYPE_FAVORITE: _ClassVar[EventType]
    EVENT_TYPE_PURCHASE: _ClassVar[EventType]
    EVENT_TYPE_SEARCH: _ClassVar[EventType]
    EVENT_TYPE_NOT_INTERESTED: _ClassVar[EventType]
    EVENT_TYPE_FEWER_LIKE_THIS: _ClassVar[EventType]
    EVENT_TYPE_BLOCK_BRAND: _ClassVar[EventType]
    EVENT_TYPE_UNBLOCK_BRAND: _ClassVar[EventType]
    EVENT_TYPE_BLOCK_SHOP: _ClassVar[EventType]
    EVENT_TYPE_UNBLOCK_SHOP: _ClassVar[EventType]
EVENT_TYPE_UNSPECIFIED: EventType
EVENT_TYPE_IMPRESSION: EventType
EVENT_TYPE_CLICK: EventType
EVENT_TYPE_CART: EventType
EVENT_TYPE_FAVORITE: EventType
EVENT_TYPE_PURCHASE: EventType
EVENT_TYPE_SEARCH: EventType
EVENT_TYPE_NOT_INTERESTED: EventType
EVENT_TYPE_FEWER_LIKE_THIS: EventType
EVENT_TYPE_BLOCK_BRAND: EventType
EVENT_TYPE_UNBLOCK_BRAND: EventType
EVENT_TYPE_BLOCK_SHOP: EventType
EVENT_TYPE_UNBLOCK_SHOP: EventType

class Event(_message.Message):
    __slots__ = ("user_id", "at_ms", "type", "item_id", "category_id", "brand_id", "shop_id", "price", "surface", "source", "expires_at_ms", "title")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_ID_FIELD_NUMBER: _ClassVar[int]
    BRAND_ID_FIELD_NUMBER: _ClassVar[int]
    SHOP_ID_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    SURFACE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    at_ms: int
    type: EventType
    item_id: int
    category_id: int
    brand_id: int
    shop_id: int
    price: float
    surface: str
    source: _common_pb2.DataDimension
    expires_at_ms: int
    title: str
    def __init__(self, user_id: _Optional[str] = ..., at_ms: _Optional[int] = ..., type: _Optional[_Union[EventType, str]] = ..., item_id: _Optional[int] = ..., category_id: _Optional[int] = ..., brand_id: _Optional[int] = ..., shop_id: _Optional[int] = ..., price: _Optional[float] = ..., surface: _Optional[str] = ..., source: _Optional[_Union[_common_pb2.DataDimension, str]] = ..., expires_at_ms: _Optional[int] = ..., title: _Optional[str] = ...) -> None: ...

class RecordRequest(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[Event]
    def __init__(self, events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ...) -> None: ...

class RecordResponse(_message.Message):
    __slots__ = ("applied", "rejected", "rejected_total")
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_TOTAL_FIELD_NUMBER: _ClassVar[int]
    applied: int
    rejected: _containers.RepeatedCompositeFieldContainer[RejectedEvent]
    rejected_total: int
    def __init__(self, applied: _Optional[int] = ..., rejected: _Optional[_Iterable[_Union[RejectedEvent, _Mapping]]] = ..., rejected_total: _Optional[int] = ...) -> None: ...

class RejectedEvent(_message.Message):
    __slots__ = ("index", "reason")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    index: int
    reason: str
    def __init__(self, index: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...
