"""What the fuzz calls and how: every method of the services in the schema, each tier's channel, and the answers.

:func:`fuzzed_rpcs` lists every method of every service ``protos/splitexit.proto``
declares, and of ``grpc.health.v1.Health``, from their descriptors, so an RPC
added to the schema is fuzzed (or the fuzz fails, if it has no strategy for
its request type). :class:`Dialer` opens a channel to a tier, plaintext or
TLS as the party that may call it; :class:`Sender` makes any call of any of
those RPCs, with messages or raw bytes, and records each answer's status,
per sample for a batch, in a :class:`FuzzReport`.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import grpc
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health_pb2

from splitexit.channel import MAX_MESSAGE_BYTES, TLS
from splitexit.shared.proto import splitexit_pb2 as pb
from splitexit.shared.tiers import Tier
from splitexit.testbed import PkiFiles, Testbed

BAD_STATUSES = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS}
CALL_TIMEOUT_S = 10.0
SERVED_BY = {  # which tiers serve each service
    "splitexit.v1.Device": (Tier.DEVICE,),
    "splitexit.v1.Tier": (Tier.EDGE, Tier.CLOUD),
    "grpc.health.v1.Health": tuple(Tier),
}
CALLERS = {Tier.DEVICE: "client", Tier.EDGE: "device", Tier.CLOUD: "edge"}  # whose certificate calls each tier
STATUSES = {code.value[0]: code for code in grpc.StatusCode}
Dial = Callable[[Tier], grpc.Channel]


@dataclass(frozen=True)
class Rpc:
    """One method of a service, as the fuzz calls it."""

    service: ServiceDescriptor
    method: MethodDescriptor

    @property
    def name(self) -> str:
        return f"{self.service.name}.{self.method.name}"

    @property
    def path(self) -> str:
        return f"/{self.service.full_name}/{self.method.name}"

    @property
    def tiers(self) -> tuple[Tier, ...]:
        if self.service.full_name not in SERVED_BY:
            raise LookupError(f"{self.name}: which tiers serve {self.service.full_name}? (add it to SERVED_BY)")
        return SERVED_BY[self.service.full_name]


def fuzzed_services() -> list[ServiceDescriptor]:
    """Every service of the schema, and the standard health service."""
    return [*pb.DESCRIPTOR.services_by_name.values(), health_pb2.DESCRIPTOR.services_by_name["Health"]]


def fuzzed_rpcs() -> list[Rpc]:
    return [Rpc(service, method) for service in fuzzed_services() for method in service.methods]


@dataclass(frozen=True)
class Dialer:
    """Opens a channel to a tier: plaintext, or TLS as :data:`CALLERS` says, with the device's bearer token.

    Plain data, so that it crosses into the process that times good requests.
    """

    addresses: dict[Tier, str]
    tls: dict[Tier, TLS] = field(default_factory=dict)  # empty: plaintext
    token: str | None = None  # sent to the device (TLS only)

    @classmethod
    def of(cls, bed: Testbed, token: str | None = None) -> Dialer:
        addresses = {tier: process.address for tier, process in bed.processes.items()}
        if bed.tls_dir is None:
            return cls(addresses)
        pki = bed.tls_dir
        return cls(addresses, {tier: PkiFiles.of(pki, caller).client_tls() for tier, caller in CALLERS.items()}, token)

    def __call__(self, tier: Tier) -> grpc.Channel:
        options = [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ]
        if tier not in self.tls:
            return grpc.insecure_channel(self.addresses[tier], options=options)
        tls = self.tls[tier]
        credentials = grpc.ssl_channel_credentials(tls.root_certificates, tls.private_key, tls.certificate_chain)
        if self.token and tier is Tier.DEVICE:
            token = grpc.access_token_call_credentials(self.token)
            credentials = grpc.composite_channel_credentials(credentials, token)
        return grpc.secure_channel(self.addresses[tier], credentials, options=options)


@dataclass(kw_only=True)
class FuzzReport:
    """What the tiers answered to the hostile messages, and how good requests fared meanwhile."""

    by_status: dict[str, int] = field(default_factory=dict)  # a plain dict: dataclasses.asdict garbles a Counter
    by_rpc: dict[str, dict[str, int]] = field(default_factory=dict)  # "Device.Infer", "raw Device.Infer": statuses
    seconds: dict[str, float] = field(default_factory=dict)  # per RPC, the time its hostile calls took
    bad: list[str] = field(default_factory=list)  # "tier rpc: STATUS: details" of every INTERNAL/UNKNOWN answer
    good_baseline_s: list[float] = field(default_factory=list)  # good requests before the hostile ones
    good_during_s: list[float] = field(default_factory=list)  # good requests while they were sent
    good_failed: int = 0

    @property
    def messages(self) -> int:
        """Answers recorded: one per call, per message of a stream, per sample of a batch."""
        return sum(self.by_status.values())

    def delay_ms(self) -> dict[str, float]:
        """Good requests' latency while hostile ones flowed, above the baseline median (p50, p99, max), in ms."""
        base = statistics.median(self.good_baseline_s)
        during = sorted(self.good_during_s)
        pick = lambda q: during[min(len(during) - 1, int(q * len(during)))]  # noqa: E731
        return {name: 1e3 * (pick(q) - base) for name, q in (("p50", 0.5), ("p99", 0.99), ("max", 1.0))}

    def record(self, rpc: str, tier: Tier, code: grpc.StatusCode, details: str) -> None:
        self.by_status[code.name] = self.by_status.get(code.name, 0) + 1
        statuses = self.by_rpc.setdefault(rpc, {})
        statuses[code.name] = statuses.get(code.name, 0) + 1
        if code in BAD_STATUSES:
            self.bad.append(f"{tier.value} {rpc}: {code.name}: {details[:300]}")


def outcomes(response: Message) -> list[tuple[grpc.StatusCode, str]]:
    """The status of each answer in ``response``: every answer of a ``StreamBatch``, every sample of a batch."""
    if isinstance(response, pb.StreamBatch):
        return [outcome for answer in response.answers for outcome in outcomes(answer)]
    if isinstance(response, pb.StreamResponse) and response.HasField("error"):
        return [(STATUSES.get(response.error.code, grpc.StatusCode.UNKNOWN), response.error.message)]
    if isinstance(response, pb.InferBatchResponse):
        errors = [(STATUSES.get(error.code, grpc.StatusCode.UNKNOWN), error.message) for error in response.errors]
        return errors + [(grpc.StatusCode.OK, "")] * (len(response.labels) - len(errors))
    return [(grpc.StatusCode.OK, "")]


def answers_due(rpc: Rpc, request: Message | bytes) -> int:
    """How many answers one message of a stream is owed: one per request of a ``ContinueBatch``, else one."""
    if isinstance(request, bytes):
        try:
            request = GetMessageClass(rpc.method.input_type).FromString(request)
        except DecodeError:
            return 1  # the tier answers an undecodable message with one error
    return len(request.requests) if isinstance(request, pb.ContinueBatch) else 1


class Sender:
    """A channel to each tier; any call of any :class:`Rpc`, each answer's status into the report."""

    def __init__(self, dial: Dial, report: FuzzReport) -> None:
        self.report = report
        self.channels = {tier: dial(tier) for tier in Tier}

    def send(self, rpc: Rpc, tier: Tier, requests: Sequence[Message] | Sequence[bytes]) -> None:
        """Call ``rpc`` on ``tier`` with ``requests`` (one unless it takes a stream); bytes go as they are."""
        raw = isinstance(requests[0], bytes)
        label = f"raw {rpc.name}" if raw else rpc.name
        answered, due = 0, sum(answers_due(rpc, request) for request in requests)
        try:
            for response in self._responses(rpc, tier, requests, raw):
                for code, details in outcomes(response):
                    answered += 1
                    self.report.record(label, tier, code, details)
        except grpc.RpcError as exc:
            self.report.record(label, tier, exc.code(), exc.details() or "")
            return
        if rpc.method.client_streaming and rpc.method.server_streaming and answered < due:
            self.report.record(label, tier, grpc.StatusCode.DATA_LOSS, f"{due - answered} of {due} unanswered")

    def _responses(
        self, rpc: Rpc, tier: Tier, requests: Sequence[Message] | Sequence[bytes], raw: bool
    ) -> Iterator[Message]:
        method, channel = rpc.method, self.channels[tier]
        kinds = {
            (False, False): channel.unary_unary,
            (False, True): channel.unary_stream,
            (True, False): channel.stream_unary,
            (True, True): channel.stream_stream,
        }
        serialize = None if raw else _serialize
        call = kinds[method.client_streaming, method.server_streaming](
            rpc.path, request_serializer=serialize, response_deserializer=GetMessageClass(method.output_type).FromString
        )
        answer = call(iter(requests) if method.client_streaming else requests[0], timeout=CALL_TIMEOUT_S)
        if not method.server_streaming:
            yield answer
        elif method.client_streaming:
            yield from answer
        else:  # a watch: its first answer, then hang up
            yield next(answer)
            answer.cancel()

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()
