"""The text models on the same three tier processes as the image model: parity with torch, exits, bad input."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import numpy as np
import pytest

from lab.text_data import LabelledText, bbc_news, sentiment
from splitexit.client import AsyncClient, request
from splitexit.samples import LabelledImage
from splitexit.shared.manifest import Manifest, TextInput, load_manifest
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.settings import DEFAULT_MODELS_DIR
from splitexit.shared.tensors import encode
from splitexit.shared.tokenizer import TextTokenizer
from splitexit.testbed import Testbed
from tests.tiers.test_bad_input import assert_status, device_call

torch = pytest.importorskip("torch")
from training.text_model import load_reference  # noqa: E402

SENTIMENT = "minilm-sentiment"
TOPIC = "minilm-bbc-topic"
THRESHOLD = 0.95  # on imdb: roughly half exit on the device, a fifth on the edge, the rest in the cloud
INVALID = grpc.StatusCode.INVALID_ARGUMENT


def package(name: str) -> Path:
    return DEFAULT_MODELS_DIR / name


@pytest.fixture(scope="module")
def sentences() -> list[LabelledText]:
    """120 real imdb sentences (the sentiment model's unseen deployment domain), fixed random order."""
    imdb = sentiment("imdb")
    return [imdb[i] for i in np.random.default_rng(3).choice(len(imdb), 120, replace=False)]


@pytest.fixture(scope="module")
def sentiment_manifest() -> Manifest:
    return load_manifest(package(SENTIMENT))


def tokenizer(manifest: Manifest, name: str) -> TextTokenizer:
    assert isinstance(manifest.input, TextInput)
    return TextTokenizer.from_package(package(name), manifest.input)


def torch_exits(name: str, manifest: Manifest, texts: list[str], truncate: bool = False) -> list[np.ndarray]:
    """``[exit, class]`` logits of the single-process torch model for each text, one unpadded sample at a time."""
    model = load_reference(package(name), len(manifest.labels))
    tok = tokenizer(manifest, name)
    with torch.no_grad():
        return [
            np.stack([logits[0].numpy() for logits in model(torch.from_numpy(tok.encode_utf8(t.encode(), truncate)))])
            for t in texts
        ]


async def infer_texts(address: str, messages: list[pb.InferRequest]) -> list[pb.InferResponse]:
    async with AsyncClient(address) as client:
        return [answer.message for answer in await asyncio.gather(*(client.infer_request(m) for m in messages))]


def test_three_tier_text_answers_equal_torch_at_the_same_exit(
    testbed: Testbed, sentences: list[LabelledText], sentiment_manifest: Manifest
) -> None:
    messages = [request(text=s.text, model=SENTIMENT, threshold=THRESHOLD) for s in sentences]
    answers = asyncio.run(infer_texts(testbed.device_address, messages))
    expected = torch_exits(SENTIMENT, sentiment_manifest, [s.text for s in sentences])
    for answer, exits in zip(answers, expected, strict=True):
        want = exits[answer.exit_block - 1]
        np.testing.assert_allclose(np.array(answer.logits), want, atol=1e-4, rtol=0)
        assert answer.label == int(want.argmax()) and answer.model == SENTIMENT
        confidences = [c for hop in answer.hops for c in hop.exit_confidences]
        assert all(c <= THRESHOLD for c in confidences[:-1])
        assert confidences[-1] > THRESHOLD or answer.exit_block == sentiment_manifest.num_blocks
    assert {pb.TierName.Name(a.exit_tier) for a in answers} == {"TIER_NAME_DEVICE", "TIER_NAME_EDGE", "TIER_NAME_CLOUD"}
    accuracy = np.mean([a.label == s.label for a, s in zip(answers, sentences, strict=True)])
    assert accuracy >= 0.7, accuracy  # cross-domain: trained on amazon + yelp only


def test_every_activation_hop_carries_hidden_states_of_the_sentence_length(
    testbed: Testbed, sentences: list[LabelledText], sentiment_manifest: Manifest
) -> None:
    text = sentences[0].text
    tokens = tokenizer(sentiment_manifest, SENTIMENT).encode_utf8(text.encode()).shape[1]
    (answer,) = asyncio.run(infer_texts(testbed.device_address, [request(text=text, model=SENTIMENT, threshold=1.0)]))
    device, edge, cloud = answer.hops
    assert (answer.exit_tier, answer.exit_block) == (pb.TIER_NAME_CLOUD, 6)
    hidden = tokens * 384 * 4  # fp32 hidden states, plus a few bytes of message framing
    assert hidden < device.bytes_sent < hidden + 1024 and hidden < edge.bytes_sent < hidden + 1024


def test_topic_model_is_served_beside_the_others_and_truncates_on_request(testbed: Testbed) -> None:
    articles, classes = bbc_news()
    chosen = [articles[i] for i in np.random.default_rng(4).choice(len(articles), 10, replace=False)]
    manifest = load_manifest(package(TOPIC))
    messages = [request(text=a.text, model=TOPIC, threshold=1.0, truncate=True) for a in chosen]
    answers = asyncio.run(infer_texts(testbed.device_address, messages))
    expected = torch_exits(TOPIC, manifest, [a.text for a in chosen], truncate=True)
    for answer, exits in zip(answers, expected, strict=True):
        np.testing.assert_allclose(np.array(answer.logits), exits[-1], atol=1e-4, rtol=0)
        assert answer.label_name == classes[int(exits[-1].argmax())]
    assert np.mean([a.label == t.label for a, t in zip(answers, chosen, strict=True)]) >= 0.8


def test_an_image_and_a_text_go_through_the_same_testbed(
    testbed: Testbed, images: list[LabelledImage], sentences: list[LabelledText]
) -> None:
    messages = [request(images[0].png, threshold=1.0), request(text=sentences[0].text, model=SENTIMENT, threshold=1.0)]
    image_answer, text_answer = asyncio.run(infer_texts(testbed.device_address, messages))
    assert (image_answer.model, text_answer.model) == ("fmnist-cnn", SENTIMENT)
    assert image_answer.exit_tier == text_answer.exit_tier == pb.TIER_NAME_CLOUD


def encode_ids(ids: list[list[int]]) -> pb.Tensor:
    array = np.asarray(ids, dtype="<i8")
    return pb.Tensor(dtype=pb.DATA_TYPE_INT64, shape=list(array.shape), raw=array.tobytes())


@pytest.mark.parametrize(
    ("message", "phrases"),
    [
        (pb.InferRequest(model=SENTIMENT, text=b"caf\xe9 au lait"), ["not valid UTF-8", "byte 0xe9 at offset 3"]),
        (pb.InferRequest(model=SENTIMENT, text=b""), ["empty"]),
        (pb.InferRequest(model=SENTIMENT, text=" \t\n ".encode()), ["empty"]),
        (request(text="great " * 200, model=SENTIMENT), ["202 tokens", "at most 128", "truncate"]),
        (request(text="a fine film", model="fmnist-cnn"), ["fmnist-cnn takes an image, not text"]),
        (pb.InferRequest(model=SENTIMENT, image=b"\x89PNG"), [f"{SENTIMENT} takes text, not an image"]),
        (pb.InferRequest(model=SENTIMENT, tensor=encode(np.zeros((1, 5), np.float32))), ["INT64 tensor of token ids"]),
        (pb.InferRequest(model=SENTIMENT, tensor=encode_ids([[101, 99999, 102]])), ["outside [0, 30522)"]),
        (pb.InferRequest(model=SENTIMENT, tensor=encode_ids([[101] * 129])), ["1 to 128"]),
        (pb.InferRequest(model=SENTIMENT, tensor=encode_ids([[101, 102]] * 2)), ["shape [1, N]"]),
    ],
    ids=[
        "bad-utf8",
        "empty",
        "whitespace",
        "too-long",
        "text-to-image-model",
        "image-to-text-model",
        "float-ids",
        "id-out-of-vocab",
        "too-many-ids",
        "batch-of-two",
    ],
)
def test_device_rejects_bad_text_then_serves_the_next(
    testbed: Testbed, sentences: list[LabelledText], message: pb.InferRequest, phrases: list[str]
) -> None:
    assert_status(lambda: device_call(testbed.device_address, message), INVALID, *phrases)
    good = device_call(testbed.device_address, request(text=sentences[0].text, model=SENTIMENT))
    assert good.model == SENTIMENT and good.label_name in ("negative", "positive")


def test_long_text_is_truncated_only_when_asked(testbed: Testbed, sentiment_manifest: Manifest) -> None:
    text = "a truly wonderful and moving film " * 40
    assert_status(
        lambda: device_call(testbed.device_address, request(text=text, model=SENTIMENT)), INVALID, "tokens long"
    )
    answer = device_call(testbed.device_address, request(text=text, model=SENTIMENT, threshold=1.0, truncate=True))
    (exits,) = torch_exits(SENTIMENT, sentiment_manifest, [text], truncate=True)
    np.testing.assert_allclose(np.array(answer.logits), exits[-1], atol=1e-4, rtol=0)
    assert answer.label_name == "positive"
