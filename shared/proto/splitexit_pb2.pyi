from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DataType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DATA_TYPE_UNSPECIFIED: _ClassVar[DataType]
    DATA_TYPE_FP32: _ClassVar[DataType]
    DATA_TYPE_FP16: _ClassVar[DataType]
    DATA_TYPE_INT8: _ClassVar[DataType]
    DATA_TYPE_INT64: _ClassVar[DataType]
    DATA_TYPE_UINT8: _ClassVar[DataType]

class TierName(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TIER_NAME_UNSPECIFIED: _ClassVar[TierName]
    TIER_NAME_DEVICE: _ClassVar[TierName]
    TIER_NAME_EDGE: _ClassVar[TierName]
    TIER_NAME_CLOUD: _ClassVar[TierName]

class DegradedReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEGRADED_REASON_UNSPECIFIED: _ClassVar[DegradedReason]
    DEGRADED_REASON_NEXT_TIER_UNREACHABLE: _ClassVar[DegradedReason]
    DEGRADED_REASON_NEXT_TIER_OVERLOADED: _ClassVar[DegradedReason]
    DEGRADED_REASON_NEXT_TIER_TOO_SLOW: _ClassVar[DegradedReason]
DATA_TYPE_UNSPECIFIED: DataType
DATA_TYPE_FP32: DataType
DATA_TYPE_FP16: DataType
DATA_TYPE_INT8: DataType
DATA_TYPE_INT64: DataType
DATA_TYPE_UINT8: DataType
TIER_NAME_UNSPECIFIED: TierName
TIER_NAME_DEVICE: TierName
TIER_NAME_EDGE: TierName
TIER_NAME_CLOUD: TierName
DEGRADED_REASON_UNSPECIFIED: DegradedReason
DEGRADED_REASON_NEXT_TIER_UNREACHABLE: DegradedReason
DEGRADED_REASON_NEXT_TIER_OVERLOADED: DegradedReason
DEGRADED_REASON_NEXT_TIER_TOO_SLOW: DegradedReason

class Quantization(_message.Message):
    __slots__ = ("scale", "zero_point", "scales", "zero_points", "axis")
    SCALE_FIELD_NUMBER: _ClassVar[int]
    ZERO_POINT_FIELD_NUMBER: _ClassVar[int]
    SCALES_FIELD_NUMBER: _ClassVar[int]
    ZERO_POINTS_FIELD_NUMBER: _ClassVar[int]
    AXIS_FIELD_NUMBER: _ClassVar[int]
    scale: float
    zero_point: int
    scales: _containers.RepeatedScalarFieldContainer[float]
    zero_points: _containers.RepeatedScalarFieldContainer[int]
    axis: int
    def __init__(self, scale: _Optional[float] = ..., zero_point: _Optional[int] = ..., scales: _Optional[_Iterable[float]] = ..., zero_points: _Optional[_Iterable[int]] = ..., axis: _Optional[int] = ...) -> None: ...

class Tensor(_message.Message):
    __slots__ = ("dtype", "shape", "raw", "quantization")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    QUANTIZATION_FIELD_NUMBER: _ClassVar[int]
    dtype: DataType
    shape: _containers.RepeatedScalarFieldContainer[int]
    raw: bytes
    quantization: Quantization
    def __init__(self, dtype: _Optional[_Union[DataType, str]] = ..., shape: _Optional[_Iterable[int]] = ..., raw: _Optional[bytes] = ..., quantization: _Optional[_Union[Quantization, _Mapping]] = ...) -> None: ...

class Plan(_message.Message):
    __slots__ = ("threshold", "exit_thresholds", "device_last_block", "edge_last_block", "name")
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    EXIT_THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    DEVICE_LAST_BLOCK_FIELD_NUMBER: _ClassVar[int]
    EDGE_LAST_BLOCK_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    threshold: float
    exit_thresholds: _containers.RepeatedScalarFieldContainer[float]
    device_last_block: int
    edge_last_block: int
    name: str
    def __init__(self, threshold: _Optional[float] = ..., exit_thresholds: _Optional[_Iterable[float]] = ..., device_last_block: _Optional[int] = ..., edge_last_block: _Optional[int] = ..., name: _Optional[str] = ...) -> None: ...

class InferRequest(_message.Message):
    __slots__ = ("model", "request_id", "image", "tensor", "text", "policy", "top_k", "truncate", "timeout_s", "forbid_degraded")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    TRUNCATE_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    FORBID_DEGRADED_FIELD_NUMBER: _ClassVar[int]
    model: str
    request_id: str
    image: bytes
    tensor: Tensor
    text: bytes
    policy: Plan
    top_k: int
    truncate: bool
    timeout_s: float
    forbid_degraded: bool
    def __init__(self, model: _Optional[str] = ..., request_id: _Optional[str] = ..., image: _Optional[bytes] = ..., tensor: _Optional[_Union[Tensor, _Mapping]] = ..., text: _Optional[bytes] = ..., policy: _Optional[_Union[Plan, _Mapping]] = ..., top_k: _Optional[int] = ..., truncate: _Optional[bool] = ..., timeout_s: _Optional[float] = ..., forbid_degraded: _Optional[bool] = ...) -> None: ...

class ContinueRequest(_message.Message):
    __slots__ = ("model", "request_id", "next_block", "activation", "policy", "top_k", "timeout_s", "forbid_degraded")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    NEXT_BLOCK_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    FORBID_DEGRADED_FIELD_NUMBER: _ClassVar[int]
    model: str
    request_id: str
    next_block: int
    activation: Tensor
    policy: Plan
    top_k: int
    timeout_s: float
    forbid_degraded: bool
    def __init__(self, model: _Optional[str] = ..., request_id: _Optional[str] = ..., next_block: _Optional[int] = ..., activation: _Optional[_Union[Tensor, _Mapping]] = ..., policy: _Optional[_Union[Plan, _Mapping]] = ..., top_k: _Optional[int] = ..., timeout_s: _Optional[float] = ..., forbid_degraded: _Optional[bool] = ...) -> None: ...

class InferBatchRequest(_message.Message):
    __slots__ = ("model", "request_ids", "tensor", "images", "texts", "policy", "top_k", "truncate", "timeout_s", "forbid_degraded")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REQUEST_IDS_FIELD_NUMBER: _ClassVar[int]
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    TRUNCATE_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    FORBID_DEGRADED_FIELD_NUMBER: _ClassVar[int]
    model: str
    request_ids: _containers.RepeatedScalarFieldContainer[str]
    tensor: Tensor
    images: _containers.RepeatedScalarFieldContainer[bytes]
    texts: _containers.RepeatedScalarFieldContainer[bytes]
    policy: Plan
    top_k: int
    truncate: bool
    timeout_s: float
    forbid_degraded: bool
    def __init__(self, model: _Optional[str] = ..., request_ids: _Optional[_Iterable[str]] = ..., tensor: _Optional[_Union[Tensor, _Mapping]] = ..., images: _Optional[_Iterable[bytes]] = ..., texts: _Optional[_Iterable[bytes]] = ..., policy: _Optional[_Union[Plan, _Mapping]] = ..., top_k: _Optional[int] = ..., truncate: _Optional[bool] = ..., timeout_s: _Optional[float] = ..., forbid_degraded: _Optional[bool] = ...) -> None: ...

class ContinueBatch(_message.Message):
    __slots__ = ("requests", "columns")
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[ContinueRequest]
    columns: _containers.RepeatedCompositeFieldContainer[ContinueColumns]
    def __init__(self, requests: _Optional[_Iterable[_Union[ContinueRequest, _Mapping]]] = ..., columns: _Optional[_Iterable[_Union[ContinueColumns, _Mapping]]] = ...) -> None: ...

class ContinueColumns(_message.Message):
    __slots__ = ("model", "next_block", "activations", "request_ids", "plans", "plan_of", "top_k", "timeout_s", "forbid_degraded")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    NEXT_BLOCK_FIELD_NUMBER: _ClassVar[int]
    ACTIVATIONS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_IDS_FIELD_NUMBER: _ClassVar[int]
    PLANS_FIELD_NUMBER: _ClassVar[int]
    PLAN_OF_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    FORBID_DEGRADED_FIELD_NUMBER: _ClassVar[int]
    model: str
    next_block: int
    activations: Tensor
    request_ids: _containers.RepeatedScalarFieldContainer[str]
    plans: _containers.RepeatedCompositeFieldContainer[Plan]
    plan_of: _containers.RepeatedScalarFieldContainer[int]
    top_k: _containers.RepeatedScalarFieldContainer[int]
    timeout_s: _containers.RepeatedScalarFieldContainer[float]
    forbid_degraded: _containers.RepeatedScalarFieldContainer[bool]
    def __init__(self, model: _Optional[str] = ..., next_block: _Optional[int] = ..., activations: _Optional[_Union[Tensor, _Mapping]] = ..., request_ids: _Optional[_Iterable[str]] = ..., plans: _Optional[_Iterable[_Union[Plan, _Mapping]]] = ..., plan_of: _Optional[_Iterable[int]] = ..., top_k: _Optional[_Iterable[int]] = ..., timeout_s: _Optional[_Iterable[float]] = ..., forbid_degraded: _Optional[_Iterable[bool]] = ...) -> None: ...

class ClassProbability(_message.Message):
    __slots__ = ("label", "label_name", "probability")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    LABEL_NAME_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    label: int
    label_name: str
    probability: float
    def __init__(self, label: _Optional[int] = ..., label_name: _Optional[str] = ..., probability: _Optional[float] = ...) -> None: ...

class StageTimings(_message.Message):
    __slots__ = ("queue_s", "decode_s", "compute_s", "codec_s", "network_s", "total_s")
    QUEUE_S_FIELD_NUMBER: _ClassVar[int]
    DECODE_S_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_S_FIELD_NUMBER: _ClassVar[int]
    CODEC_S_FIELD_NUMBER: _ClassVar[int]
    NETWORK_S_FIELD_NUMBER: _ClassVar[int]
    TOTAL_S_FIELD_NUMBER: _ClassVar[int]
    queue_s: float
    decode_s: float
    compute_s: float
    codec_s: float
    network_s: float
    total_s: float
    def __init__(self, queue_s: _Optional[float] = ..., decode_s: _Optional[float] = ..., compute_s: _Optional[float] = ..., codec_s: _Optional[float] = ..., network_s: _Optional[float] = ..., total_s: _Optional[float] = ...) -> None: ...

class Hop(_message.Message):
    __slots__ = ("tier", "first_block", "last_block", "timings", "bytes_sent", "exit_confidences", "exit_labels")
    TIER_FIELD_NUMBER: _ClassVar[int]
    FIRST_BLOCK_FIELD_NUMBER: _ClassVar[int]
    LAST_BLOCK_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    BYTES_SENT_FIELD_NUMBER: _ClassVar[int]
    EXIT_CONFIDENCES_FIELD_NUMBER: _ClassVar[int]
    EXIT_LABELS_FIELD_NUMBER: _ClassVar[int]
    tier: TierName
    first_block: int
    last_block: int
    timings: StageTimings
    bytes_sent: int
    exit_confidences: _containers.RepeatedScalarFieldContainer[float]
    exit_labels: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, tier: _Optional[_Union[TierName, str]] = ..., first_block: _Optional[int] = ..., last_block: _Optional[int] = ..., timings: _Optional[_Union[StageTimings, _Mapping]] = ..., bytes_sent: _Optional[int] = ..., exit_confidences: _Optional[_Iterable[float]] = ..., exit_labels: _Optional[_Iterable[int]] = ...) -> None: ...

class InferResponse(_message.Message):
    __slots__ = ("request_id", "model", "label", "label_name", "confidence", "top_k", "logits", "exit_tier", "exit_block", "hops", "policy", "cost", "cost_final_layer", "degraded", "degradation")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    LABEL_NAME_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    LOGITS_FIELD_NUMBER: _ClassVar[int]
    EXIT_TIER_FIELD_NUMBER: _ClassVar[int]
    EXIT_BLOCK_FIELD_NUMBER: _ClassVar[int]
    HOPS_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    COST_FINAL_LAYER_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    DEGRADATION_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    model: str
    label: int
    label_name: str
    confidence: float
    top_k: _containers.RepeatedCompositeFieldContainer[ClassProbability]
    logits: _containers.RepeatedScalarFieldContainer[float]
    exit_tier: TierName
    exit_block: int
    hops: _containers.RepeatedCompositeFieldContainer[Hop]
    policy: str
    cost: float
    cost_final_layer: float
    degraded: bool
    degradation: Degradation
    def __init__(self, request_id: _Optional[str] = ..., model: _Optional[str] = ..., label: _Optional[int] = ..., label_name: _Optional[str] = ..., confidence: _Optional[float] = ..., top_k: _Optional[_Iterable[_Union[ClassProbability, _Mapping]]] = ..., logits: _Optional[_Iterable[float]] = ..., exit_tier: _Optional[_Union[TierName, str]] = ..., exit_block: _Optional[int] = ..., hops: _Optional[_Iterable[_Union[Hop, _Mapping]]] = ..., policy: _Optional[str] = ..., cost: _Optional[float] = ..., cost_final_layer: _Optional[float] = ..., degraded: _Optional[bool] = ..., degradation: _Optional[_Union[Degradation, _Mapping]] = ...) -> None: ...

class Degradation(_message.Message):
    __slots__ = ("reason", "tier", "message")
    REASON_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    reason: DegradedReason
    tier: TierName
    message: str
    def __init__(self, reason: _Optional[_Union[DegradedReason, str]] = ..., tier: _Optional[_Union[TierName, str]] = ..., message: _Optional[str] = ...) -> None: ...

class InferBatchResponse(_message.Message):
    __slots__ = ("model", "request_ids", "labels", "confidences", "exit_blocks", "exit_tiers", "degraded", "costs", "policies", "top_k", "top_k_labels", "top_k_probabilities", "label_names", "errors", "latencies_s")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REQUEST_IDS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCES_FIELD_NUMBER: _ClassVar[int]
    EXIT_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    EXIT_TIERS_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    COSTS_FIELD_NUMBER: _ClassVar[int]
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    TOP_K_LABELS_FIELD_NUMBER: _ClassVar[int]
    TOP_K_PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    LABEL_NAMES_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    LATENCIES_S_FIELD_NUMBER: _ClassVar[int]
    model: str
    request_ids: _containers.RepeatedScalarFieldContainer[str]
    labels: _containers.RepeatedScalarFieldContainer[int]
    confidences: _containers.RepeatedScalarFieldContainer[float]
    exit_blocks: _containers.RepeatedScalarFieldContainer[int]
    exit_tiers: _containers.RepeatedScalarFieldContainer[TierName]
    degraded: _containers.RepeatedScalarFieldContainer[bool]
    costs: _containers.RepeatedScalarFieldContainer[float]
    policies: _containers.RepeatedScalarFieldContainer[str]
    top_k: int
    top_k_labels: _containers.RepeatedScalarFieldContainer[int]
    top_k_probabilities: _containers.RepeatedScalarFieldContainer[float]
    label_names: _containers.RepeatedScalarFieldContainer[str]
    errors: _containers.RepeatedCompositeFieldContainer[BatchError]
    latencies_s: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, model: _Optional[str] = ..., request_ids: _Optional[_Iterable[str]] = ..., labels: _Optional[_Iterable[int]] = ..., confidences: _Optional[_Iterable[float]] = ..., exit_blocks: _Optional[_Iterable[int]] = ..., exit_tiers: _Optional[_Iterable[_Union[TierName, str]]] = ..., degraded: _Optional[_Iterable[bool]] = ..., costs: _Optional[_Iterable[float]] = ..., policies: _Optional[_Iterable[str]] = ..., top_k: _Optional[int] = ..., top_k_labels: _Optional[_Iterable[int]] = ..., top_k_probabilities: _Optional[_Iterable[float]] = ..., label_names: _Optional[_Iterable[str]] = ..., errors: _Optional[_Iterable[_Union[BatchError, _Mapping]]] = ..., latencies_s: _Optional[_Iterable[float]] = ...) -> None: ...

class BatchError(_message.Message):
    __slots__ = ("index", "code", "message")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    index: int
    code: int
    message: str
    def __init__(self, index: _Optional[int] = ..., code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class StreamResponse(_message.Message):
    __slots__ = ("response", "error")
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    response: InferResponse
    error: StreamError
    def __init__(self, response: _Optional[_Union[InferResponse, _Mapping]] = ..., error: _Optional[_Union[StreamError, _Mapping]] = ...) -> None: ...

class StreamBatch(_message.Message):
    __slots__ = ("answers",)
    ANSWERS_FIELD_NUMBER: _ClassVar[int]
    answers: _containers.RepeatedCompositeFieldContainer[StreamResponse]
    def __init__(self, answers: _Optional[_Iterable[_Union[StreamResponse, _Mapping]]] = ...) -> None: ...

class StreamError(_message.Message):
    __slots__ = ("request_id", "code", "message")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    code: int
    message: str
    def __init__(self, request_id: _Optional[str] = ..., code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class PolicyStateRequest(_message.Message):
    __slots__ = ("model", "policy")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    model: str
    policy: str
    def __init__(self, model: _Optional[str] = ..., policy: _Optional[str] = ...) -> None: ...

class ArmState(_message.Message):
    __slots__ = ("group", "name", "pulls", "mean_reward")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PULLS_FIELD_NUMBER: _ClassVar[int]
    MEAN_REWARD_FIELD_NUMBER: _ClassVar[int]
    group: str
    name: str
    pulls: float
    mean_reward: float
    def __init__(self, group: _Optional[str] = ..., name: _Optional[str] = ..., pulls: _Optional[float] = ..., mean_reward: _Optional[float] = ...) -> None: ...

class BestArm(_message.Message):
    __slots__ = ("group", "name", "plan")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    group: str
    name: str
    plan: Plan
    def __init__(self, group: _Optional[str] = ..., name: _Optional[str] = ..., plan: _Optional[_Union[Plan, _Mapping]] = ...) -> None: ...

class PolicyState(_message.Message):
    __slots__ = ("model", "policy", "is_default", "samples", "arms", "best", "costs", "state_json")
    class CostsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    ARMS_FIELD_NUMBER: _ClassVar[int]
    BEST_FIELD_NUMBER: _ClassVar[int]
    COSTS_FIELD_NUMBER: _ClassVar[int]
    STATE_JSON_FIELD_NUMBER: _ClassVar[int]
    model: str
    policy: str
    is_default: bool
    samples: int
    arms: _containers.RepeatedCompositeFieldContainer[ArmState]
    best: _containers.RepeatedCompositeFieldContainer[BestArm]
    costs: _containers.ScalarMap[str, float]
    state_json: str
    def __init__(self, model: _Optional[str] = ..., policy: _Optional[str] = ..., is_default: _Optional[bool] = ..., samples: _Optional[int] = ..., arms: _Optional[_Iterable[_Union[ArmState, _Mapping]]] = ..., best: _Optional[_Iterable[_Union[BestArm, _Mapping]]] = ..., costs: _Optional[_Mapping[str, float]] = ..., state_json: _Optional[str] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("default_model", "models")
    DEFAULT_MODEL_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    default_model: str
    models: _containers.RepeatedCompositeFieldContainer[ModelMetadataResponse]
    def __init__(self, default_model: _Optional[str] = ..., models: _Optional[_Iterable[_Union[ModelMetadataResponse, _Mapping]]] = ...) -> None: ...

class ModelMetadataRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class TensorContract(_message.Message):
    __slots__ = ("dtype", "shape", "max_length", "vocab_size")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    MAX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    VOCAB_SIZE_FIELD_NUMBER: _ClassVar[int]
    dtype: DataType
    shape: _containers.RepeatedScalarFieldContainer[int]
    max_length: int
    vocab_size: int
    def __init__(self, dtype: _Optional[_Union[DataType, str]] = ..., shape: _Optional[_Iterable[int]] = ..., max_length: _Optional[int] = ..., vocab_size: _Optional[int] = ...) -> None: ...

class ImagePreprocessing(_message.Message):
    __slots__ = ("channels", "height", "width", "mean", "std")
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    STD_FIELD_NUMBER: _ClassVar[int]
    channels: int
    height: int
    width: int
    mean: float
    std: float
    def __init__(self, channels: _Optional[int] = ..., height: _Optional[int] = ..., width: _Optional[int] = ..., mean: _Optional[float] = ..., std: _Optional[float] = ...) -> None: ...

class TextPreprocessing(_message.Message):
    __slots__ = ("max_tokens", "tokenizer_sha256")
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOKENIZER_SHA256_FIELD_NUMBER: _ClassVar[int]
    max_tokens: int
    tokenizer_sha256: str
    def __init__(self, max_tokens: _Optional[int] = ..., tokenizer_sha256: _Optional[str] = ...) -> None: ...

class ExitInfo(_message.Message):
    __slots__ = ("block", "accuracy")
    BLOCK_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    block: int
    accuracy: float
    def __init__(self, block: _Optional[int] = ..., accuracy: _Optional[float] = ...) -> None: ...

class HostedRange(_message.Message):
    __slots__ = ("tier", "first_block", "last_block")
    TIER_FIELD_NUMBER: _ClassVar[int]
    FIRST_BLOCK_FIELD_NUMBER: _ClassVar[int]
    LAST_BLOCK_FIELD_NUMBER: _ClassVar[int]
    tier: TierName
    first_block: int
    last_block: int
    def __init__(self, tier: _Optional[_Union[TierName, str]] = ..., first_block: _Optional[int] = ..., last_block: _Optional[int] = ...) -> None: ...

class ModelMetadataResponse(_message.Message):
    __slots__ = ("name", "version", "task", "input_kind", "image", "text", "tensor", "labels", "num_blocks", "exits", "hosted", "policies", "default_policy")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    INPUT_KIND_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    NUM_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    EXITS_FIELD_NUMBER: _ClassVar[int]
    HOSTED_FIELD_NUMBER: _ClassVar[int]
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_POLICY_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    task: str
    input_kind: str
    image: ImagePreprocessing
    text: TextPreprocessing
    tensor: TensorContract
    labels: _containers.RepeatedScalarFieldContainer[str]
    num_blocks: int
    exits: _containers.RepeatedCompositeFieldContainer[ExitInfo]
    hosted: _containers.RepeatedCompositeFieldContainer[HostedRange]
    policies: _containers.RepeatedScalarFieldContainer[str]
    default_policy: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., task: _Optional[str] = ..., input_kind: _Optional[str] = ..., image: _Optional[_Union[ImagePreprocessing, _Mapping]] = ..., text: _Optional[_Union[TextPreprocessing, _Mapping]] = ..., tensor: _Optional[_Union[TensorContract, _Mapping]] = ..., labels: _Optional[_Iterable[str]] = ..., num_blocks: _Optional[int] = ..., exits: _Optional[_Iterable[_Union[ExitInfo, _Mapping]]] = ..., hosted: _Optional[_Iterable[_Union[HostedRange, _Mapping]]] = ..., policies: _Optional[_Iterable[str]] = ..., default_policy: _Optional[str] = ...) -> None: ...
