from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class CatalogItem(_message.Message):
    __slots__ = ("item_id", "category_id", "brand_id", "shop_id", "price", "popularity", "embedding", "title", "complement_categories", "deleted", "embedding_f32le")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_ID_FIELD_NUMBER: _ClassVar[int]
    BRAND_ID_FIELD_NUMBER: _ClassVar[int]
    SHOP_ID_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    POPULARITY_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    COMPLEMENT_CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_F32LE_FIELD_NUMBER: _ClassVar[int]
    item_id: int
    category_id: int
    brand_id: int
    shop_id: int
    price: float
    popularity: float
    embedding: _containers.RepeatedScalarFieldContainer[float]
    title: str
    complement_categories: _containers.RepeatedScalarFieldContainer[int]
    deleted: bool
    embedding_f32le: bytes
    def __init__(self, item_id: _Optional[int] = ..., category_id: _Optional[int] = ..., brand_id: _Optional[int] = ..., shop_id: _Optional[int] = ..., price: _Optional[float] = ..., popularity: _Optional[float] = ..., embedding: _Optional[_Iterable[float]] = ..., title: _Optional[str] = ..., complement_categories: _Optional[_Iterable[int]] = ..., deleted: _Optional[bool] = ..., embedding_f32le: _Optional[bytes] = ...) -> None: ...

class UpsertResponse(_message.Message):
    __slots__ = ("upserted", "deleted", "items")
    UPSERTED_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    upserted: int
    deleted: int
    items: int
    def __init__(self, upserted: _Optional[int] = ..., deleted: _Optional[int] = ..., items: _Optional[int] = ...) -> None: ...
