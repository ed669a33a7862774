"""The request messages the SDK sends: one ``InferRequest`` (:func:`request`), one ``InferBatchRequest``
(:func:`batch_request`), and a numpy array as a wire ``Tensor`` (:func:`tensor_message`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from splitexit.shared.proto import splitexit_pb2 as pb

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

TENSOR_DTYPES = {
    "float32": pb.DATA_TYPE_FP32,
    "float16": pb.DATA_TYPE_FP16,
    "int64": pb.DATA_TYPE_INT64,
    "uint8": pb.DATA_TYPE_UINT8,
}


def tensor_message(array: ArrayLike) -> pb.Tensor:
    """A numpy array (block 1's input, preprocessed as ``ModelMetadata`` says) as a ``Tensor``."""
    import numpy as np

    values = np.ascontiguousarray(array)
    if values.dtype.name not in TENSOR_DTYPES:
        raise ValueError(f"tensors are {', '.join(TENSOR_DTYPES)}, not {values.dtype.name}")
    raw = values.astype(values.dtype.newbyteorder("<")).tobytes()
    return pb.Tensor(dtype=TENSOR_DTYPES[values.dtype.name], shape=values.shape, raw=raw)


def _one_of(**inputs: object) -> str:
    """The name of the one input given; ValueError unless exactly one is."""
    given = [name for name, value in inputs.items() if value is not None]
    if len(given) != 1:
        *others, last = inputs
        raise ValueError(f"give exactly one of {', '.join(others)} and {last}, not {' and '.join(given) or 'none'}")
    return given[0]


def _plan(threshold: float | None, policy: str) -> pb.Plan | None:
    return None if threshold is None and not policy else pb.Plan(threshold=threshold, name=policy)


def request(
    image: bytes | None = None,
    *,
    text: str | None = None,
    tensor: ArrayLike | None = None,
    model: str = "",
    threshold: float | None = None,
    policy: str = "",
    top_k: int = 0,
    truncate: bool = False,
    timeout_s: float | None = None,
    forbid_degraded: bool = False,
    request_id: str = "",
) -> pb.InferRequest:
    """One ``InferRequest``: exactly one of ``image`` (encoded bytes), ``text`` or ``tensor`` (numpy, batch 1).

    ``threshold`` exits at the first exit whose confidence exceeds it (0..1, at every exit);
    ``policy`` names a device policy instead (``splitee``, ``dimee``, ...); neither: the model's default.
    """
    _one_of(image=image, text=text, tensor=tensor)
    message = pb.InferRequest(
        model=model,
        request_id=request_id,
        policy=_plan(threshold, policy),
        top_k=top_k,
        truncate=truncate,
        timeout_s=timeout_s,
        forbid_degraded=forbid_degraded,
    )
    if image is not None:
        message.image = bytes(image)
    elif text is not None:
        message.text = text.encode("utf-8", errors="strict")
    elif tensor is not None:
        message.tensor.CopyFrom(tensor_message(tensor))
    return message


def batch_request(
    images: Sequence[bytes] | None = None,
    *,
    texts: Sequence[str] | None = None,
    tensor: ArrayLike | None = None,
    model: str = "",
    threshold: float | None = None,
    policy: str = "",
    top_k: int = 0,
    truncate: bool = False,
    timeout_s: float | None = None,
    forbid_degraded: bool = False,
    request_ids: Sequence[str] = (),
) -> pb.InferBatchRequest:
    """One ``InferBatchRequest``: exactly one of ``images``, ``texts`` or ``tensor`` (numpy, ``[N, ...]``).

    The options are every sample's, as :func:`request` takes them; ``request_ids``: none or one per sample.
    """
    _one_of(images=images, texts=texts, tensor=tensor)
    message = pb.InferBatchRequest(
        model=model,
        request_ids=request_ids,
        policy=_plan(threshold, policy),
        top_k=top_k,
        truncate=truncate,
        timeout_s=timeout_s,
        forbid_degraded=forbid_degraded,
    )
    if images is not None:
        message.images.extend(bytes(image) for image in images)
    elif texts is not None:
        message.texts.extend(text.encode("utf-8", errors="strict") for text in texts)
    elif tensor is not None:
        message.tensor.CopyFrom(tensor_message(tensor))
    return message
