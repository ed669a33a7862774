"""The fuzz's strategies reach every field of the batch messages, a field added later among them."""

from __future__ import annotations

import pytest
from google.protobuf.message import Message
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from bench.hostile_batches import continue_batches, infer_batch_requests
from bench.proto_strategies import messages
from splitexit.samples import load_pack
from splitexit.shared.proto import splitexit_pb2 as pb

ACTIVATIONS = {"3": [1, 16, 14, 14], "5": [1, 32, 7, 7]}
EXAMPLES = settings(
    max_examples=200,
    database=None,
    derandomize=True,
    phases=[Phase.generate],
    suppress_health_check=list(HealthCheck),
)


def is_set(message: Message, name: str) -> bool:
    field = message.DESCRIPTOR.fields_by_name[name]
    if field.is_repeated:
        return len(getattr(message, name)) > 0
    if field.has_presence:
        return message.HasField(name)
    return bool(getattr(message, name))


def strategies() -> list[tuple[type[Message], st.SearchStrategy[Message]]]:
    return [
        (pb.InferBatchRequest, infer_batch_requests(load_pack()[0].png)),
        (pb.ContinueBatch, continue_batches(ACTIVATIONS)),
        (pb.PolicyState, messages(pb.PolicyState)),  # a map field, a repeated message, every scalar kind
    ]


@pytest.mark.parametrize(("cls", "strategy"), strategies(), ids=lambda value: getattr(value, "__name__", ""))
def test_every_field_is_set_in_some_message(cls: type[Message], strategy: st.SearchStrategy[Message]) -> None:
    names = [field.name for field in cls.DESCRIPTOR.fields]
    seen: set[str] = set()

    @EXAMPLES
    @given(strategy)
    def draw(message: Message) -> None:
        assert isinstance(message, cls)
        seen.update(name for name in names if is_set(message, name))

    draw()
    assert set(names) - seen == set(), f"{cls.__name__}: never set"
