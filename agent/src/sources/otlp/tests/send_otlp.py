"""Sends traces, metrics and logs with the OpenTelemetry Python SDK and its OTLP exporters.

Usage: send_otlp.py grpc|http ENDPOINT
Prints, as JSON on stdout, the ids of the spans it created. Exits non-zero when an export
was not acknowledged.
"""

import json
import logging
import sys

from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

protocol, endpoint = sys.argv[1], sys.argv[2]

if protocol == "grpc":
    from grpc import Compression
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    spans_out = OTLPSpanExporter(
        endpoint=endpoint, insecure=True, timeout=5, compression=Compression.Gzip
    )
    metrics_out = OTLPMetricExporter(endpoint=endpoint, insecure=True, timeout=5)
    logs_out = OTLPLogExporter(endpoint=endpoint, insecure=True, timeout=5)
elif protocol == "http":
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    spans_out = OTLPSpanExporter(
        endpoint=endpoint + "/v1/traces", timeout=5, compression=Compression.Gzip
    )
    metrics_out = OTLPMetricExporter(endpoint=endpoint + "/v1/metrics", timeout=5)
    logs_out = OTLPLogExporter(endpoint=endpoint + "/v1/logs", timeout=5)
else:
    sys.exit(f"unknown protocol {protocol}")


class Checked:
    """Delegates to an exporter and remembers exports that were not acknowledged."""

    def __init__(self, inner):
        self.inner = inner
        self.failures = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def export(self, batch, *args, **kwargs):
        result = self.inner.export(batch, *args, **kwargs)
        if result.name != "SUCCESS":
            self.failures.append(result.name)
        return result


spans_out, metrics_out, logs_out = Checked(spans_out), Checked(metrics_out), Checked(logs_out)
resource = Resource.create({"service.name": "checkout", "deployment.environment": "test"})

tracer_provider = TracerProvider(resource=resource)
tracer_provider.add_span_processor(SimpleSpanProcessor(spans_out))
meter_provider = MeterProvider(
    resource=resource,
    metric_readers=[PeriodicExportingMetricReader(metrics_out, export_interval_millis=3_600_000)],
)
logger_provider = LoggerProvider(resource=resource)
logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs_out))
logger = logging.getLogger("shop.checkout")
logger.propagate = False
logger.setLevel(logging.INFO)
logger.addHandler(LoggingHandler(level=logging.INFO, logger_provider=logger_provider))

tracer = tracer_provider.get_tracer("shop.checkout", "1.4.2")
meter = meter_provider.get_meter("shop.checkout", "1.4.2")
orders = meter.create_counter("orders_placed", unit="1", description="Orders placed.")
duration = meter.create_histogram("checkout_duration_ms", unit="ms")

ids = {}
with tracer.start_as_current_span("checkout") as parent:
    parent.set_attribute("order.id", "A-1001")
    parent.set_attribute("order.items", 3)
    with tracer.start_as_current_span("charge-card") as child:
        child.set_attribute("payment.provider", "acme")
        child.add_event("retry", {"attempt": 2})
        logger.warning("payment declined for order A-1001", extra={"attempt": 2})
        ids["charge-card"] = format(child.get_span_context().span_id, "016x")
    ids["checkout"] = format(parent.get_span_context().span_id, "016x")
    ids["trace"] = format(parent.get_span_context().trace_id, "032x")
logger.info("order A-1001 placed by alice@example.com")

orders.add(3, {"region": "eu"})
orders.add(2, {"region": "us"})
duration.record(12.5)
duration.record(80.0)

tracer_provider.shutdown()
meter_provider.shutdown()
logger_provider.shutdown()

failures = {
    "traces": spans_out.failures,
    "metrics": metrics_out.failures,
    "logs": logs_out.failures,
}
if any(failures.values()):
    sys.exit(f"exports not acknowledged: {failures}")
print(json.dumps(ids))
