from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DataDimension(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DATA_DIMENSION_UNSPECIFIED: _ClassVar[DataDimension]
    DATA_DIMENSION_SEARCH: _ClassVar[DataDimension]
    DATA_DIMENSION_BROWSING: _ClassVar[DataDimension]
    DATA_DIMENSION_FAVORITES: _ClassVar[DataDimension]
    DATA_DIMENSION_CART: _ClassVar[DataDimension]
    DATA_DIMENSION_PURCHASES: _ClassVar[DataDimension]
    DATA_DIMENSION_LOCATION: _ClassVar[DataDimension]
    DATA_DIMENSION_SOCIAL: _ClassVar[DataDimension]
    DATA_DIMENSION_CROSS_PLATFORM: _ClassVar[DataDimension]
    DATA_DIMENSION_TRENDING: _ClassVar[DataDimension]
    DATA_DIMENSION_EDITORIAL: _ClassVar[DataDimension]

class LifecycleStage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LIFECYCLE_STAGE_UNSPECIFIED: _ClassVar[LifecycleStage]
    LIFECYCLE_STAGE_NEW: _ClassVar[LifecycleStage]
    LIFECYCLE_STAGE_ACTIVE: _ClassVar[LifecycleStage]
    LIFECYCLE_STAGE_SILENT: _ClassVar[LifecycleStage]
    LIFECYCLE_STAGE_CHURNED: _ClassVar[LifecycleStage]
DATA_DIMENSION_UNSPECIFIED: DataDimension
DATA_DIMENSION_SEARCH: DataDimension
DATA_DIMENSION_BROWSING: DataDimension
DATA_DIMENSION_FAVORITES: DataDimension
DATA_DIMENSION_CART: DataDimension
DATA_DIMENSION_PURCHASES: DataDimension
DATA_DIMENSION_LOCATION: DataDimension
DATA_DIMENSION_SOCIAL: DataDimension
DATA_DIMENSION_CROSS_PLATFORM: DataDimension
DATA_DIMENSION_TRENDING: DataDimension
DATA_DIMENSION_EDITORIAL: DataDimension
LIFECYCLE_STAGE_UNSPECIFIED: LifecycleStage
LIFECYCLE_STAGE_NEW: LifecycleStage
LIFECYCLE_STAGE_ACTIVE: LifecycleStage
LIFECYCLE_STAGE_SILENT: LifecycleStage
LIFECYCLE_STAGE_CHURNED: LifecycleStage

class DimensionConsent(_message.Message):
    __slots__ = ("dimension", "granted")
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    dimension: DataDimension
    granted: bool
    def __init__(self, dimension: _Optional[_Union[DataDimension, str]] = ..., granted: _Optional[bool] = ...) -> None: ...

class ConsentOverride(_message.Message):
    __slots__ = ("denied", "personalization_off")
    DENIED_FIELD_NUMBER: _ClassVar[int]
    PERSONALIZATION_OFF_FIELD_NUMBER: _ClassVar[int]
    denied: _containers.RepeatedScalarFieldContainer[DataDimension]
    personalization_off: bool
    def __init__(self, denied: _Optional[_Iterable[_Union[DataDimension, str]]] = ..., personalization_off: _Optional[bool] = ...) -> None: ...
