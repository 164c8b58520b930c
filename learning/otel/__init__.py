"""OpenTelemetry adapter: OTLP/HTTP trace exports become runs through the ingest
service. `decode` (protobuf/JSON → spans), `conventions` (what the GenAI and
OpenInference attributes say), `steps` and `mapping` (spans → run, step and feedback
payloads), `ingest` (validation and storage through `learning.services`). The HTTP
view is `learning.api.otel`."""

from learning.otel.decode import (
    OtelSpan,
    OtlpDecodeError,
    spans_from_json,
    spans_from_protobuf,
)
from learning.otel.ingest import OtelIngestResult, OtlpInvalid, otel_traces_ingest

__all__ = [
    "OtelIngestResult",
    "OtelSpan",
    "OtlpDecodeError",
    "OtlpInvalid",
    "otel_traces_ingest",
    "spans_from_json",
    "spans_from_protobuf",
]
