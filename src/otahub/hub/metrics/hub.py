"""Every metric of one hub, in a registry of its own."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from otahub.hub.metrics.database import time_statements
from otahub.hub.metrics.downloads import DownloadStats
from otahub.hub.metrics.rollouts import RolloutProgress
from otahub.protocols.states import UpdateState

if TYPE_CHECKING:
    from otahub.hub.ingest import IngestJournal
    from otahub.hub.store.blobs import BlobStore
    from otahub.hub.store.database import Database
    from otahub.mqtt import MQTTServer

DIALECTS = ("thin-edge", "tedge-legacy", "thingsboard", "enos")
# connections whose CONNECT is not accepted yet, and accepted ones without a dialect
CONNECTING = "connecting"
ANONYMOUS = "anonymous"

_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_LAG = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

UpdateCounter = Callable[[], Awaitable[Mapping[str, int]]]
RolloutCounter = Callable[[], Awaitable[Mapping[str, Mapping[str, int]]]]


class HubMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.downloads = DownloadStats()
        #: filled at each scrape from watch_rollouts' counter: see RolloutProgress
        self.rollouts = RolloutProgress(self.registry)
        self.database_seconds = Histogram(
            "otahub_database_query_seconds",
            "Time of each database statement",
            buckets=_FAST,
            registry=self.registry,
        )
        self.blob_seconds = Histogram(
            "otahub_blob_store_seconds",
            "Time of blob store operations (exists, delete, verify, commit)",
            ["operation"],
            buckets=_FAST,
            registry=self.registry,
        )
        self.loop_lag_seconds = Histogram(
            "otahub_event_loop_lag_seconds",
            "How late a 0.5 s timer fires on the hub's event loop",
            buckets=_LAG,
            registry=self.registry,
        )
        self.mqtt: MQTTServer | None = None
        self.ingest: IngestJournal | None = None
        self._count_updates: UpdateCounter | None = None
        self._count_rollouts: RolloutCounter | None = None
        self.update_counts: Mapping[str, int] = {}
        self.registry.register(_LiveCollector(self))

    # -- what is measured ---------------------------------------------------------

    def watch_database(self, db: Database) -> None:
        time_statements(db.engine.sync_engine, self.database_seconds.observe)

    def watch_blobs(self, blobs: BlobStore) -> None:
        histogram = self.blob_seconds

        def observe(operation: str, seconds: float) -> None:
            histogram.labels(operation).observe(seconds)

        blobs.latency_observer = observe

    def watch_updates(self, count: UpdateCounter) -> None:
        """``count`` gives the updates per state; asked once per scrape."""
        self._count_updates = count

    def watch_rollouts(self, count: RolloutCounter) -> None:
        """``count`` gives each active rollout's devices per state; asked once per scrape.
        A rollout that is no longer active loses its series."""
        self._count_rollouts = count

    def watch_mqtt(self, server: MQTTServer) -> None:
        self.mqtt = server

    def watch_ingest(self, journal: IngestJournal) -> None:
        self.ingest = journal

    def observe_loop_lag(self, seconds: float) -> None:
        self.loop_lag_seconds.observe(seconds)

    # -- scraping -------------------------------------------------------------------

    async def render(self) -> bytes:
        """The text exposition, with the counts that need the database fetched first."""
        if self._count_updates is not None:
            self.update_counts = await self._count_updates()
        if self._count_rollouts is not None:
            self.rollouts.replace_all(await self._count_rollouts())
        return generate_latest(self.registry)


class _LiveCollector(Collector):
    """Reads the plain counters of the MQTT endpoint and the downloads when scraped."""

    def __init__(self, metrics: HubMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        yield from self._mqtt()
        yield from self._ingest()
        yield from self._downloads()
        yield from self._updates()

    def _ingest(self) -> Iterator[Metric]:
        journal = self._metrics.ingest
        if journal is None:
            return
        yield GaugeMetricFamily(
            "otahub_ingest_backlog",
            "Device reports acknowledged (or being written) and not yet applied",
            value=journal.backlog,
        )
        yield CounterMetricFamily(
            "otahub_ingest_recorded",
            "Device reports recorded in the ingest journal",
            value=journal.recorded,
        )
        yield CounterMetricFamily(
            "otahub_ingest_applied",
            "Device reports applied from the ingest journal",
            value=journal.applied,
        )

    def _mqtt(self) -> Iterator[Metric]:
        server = self._metrics.mqtt
        if server is None:
            return
        by_dialect = dict.fromkeys((*DIALECTS, ANONYMOUS, CONNECTING), 0)
        for identity in server.connection_identities():
            dialect = CONNECTING if identity is None else identity.dialect or ANONYMOUS
            by_dialect[dialect] = by_dialect.get(dialect, 0) + 1
        connections = GaugeMetricFamily(
            "otahub_mqtt_connections",
            "Open MQTT connections by the dialect of their session",
            labels=["dialect"],
        )
        for dialect, count in by_dialect.items():
            connections.add_metric([dialect], count)
        yield connections
        stats = server.stats
        for name, doc, value in (
            ("otahub_mqtt_messages_received", "PUBLISH packets received", stats.messages_in),
            ("otahub_mqtt_messages_sent", "PUBLISH packets sent", stats.messages_out),
            ("otahub_mqtt_received_bytes", "Bytes read from MQTT connections", stats.bytes_in),
            ("otahub_mqtt_sent_bytes", "Bytes written to MQTT connections", stats.bytes_out),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        refused = CounterMetricFamily(
            "otahub_mqtt_refused_connects",
            "MQTT connections refused or closed before their CONNECT was accepted, by reason",
            labels=["reason"],
        )
        for reason, count in sorted(stats.refused.items()):
            refused.add_metric([reason], count)
        yield refused

    def _downloads(self) -> Iterator[Metric]:
        downloads = self._metrics.downloads
        yield GaugeMetricFamily(
            "otahub_downloads_active",
            "Download responses (firmware, files) being sent now",
            value=downloads.active,
        )
        yield CounterMetricFamily(
            "otahub_downloads", "Download responses started", value=downloads.started
        )
        yield CounterMetricFamily(
            "otahub_download_sent_bytes",
            "Body bytes handed to the HTTP server by download responses",
            value=downloads.bytes_sent,
        )

    def _updates(self) -> Iterator[Metric]:
        counts = self._metrics.update_counts
        family = GaugeMetricFamily(
            "otahub_updates", "Updates in the database by state", labels=["state"]
        )
        for state in UpdateState:
            family.add_metric([state.value], counts.get(state.value, 0))
        yield family
