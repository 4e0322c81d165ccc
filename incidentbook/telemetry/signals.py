"""The signal catalogue: what a signal means, apart from which metric carries it.

Checks ask for a signal ("errors", "latency_p95", "pool_in_use", ...) and the catalogue answers
with a PromQL query for the exporter dialect each service actually speaks, or says it has none.

    cat = Catalogue(mappings=cfg.signals)                 # built-in dialects + [signals.*]
    disc = cat.discover(listing_frame, services)          # one series listing, no query per guess
    disc.resolved("checkout", "errors")                   # -> Resolved(dialect="micrometer", ...)
    disc.query_all("errors")                              # [(query, label, services)] one per dialect
    disc.coverage()                                       # which services have no error/latency

Templates use three placeholders: `$sel` (a label matcher: `service!=""` over every service, or
`service="checkout"` for one, the value escaped), `$by` (the labels the result is grouped by: the
service label, plus a dialect's workload labels) and `$m0`, `$m1`, ... (the metric names that
matched the template's `needs`, so name variants such as `vllm:` / `vllm_` share one template).

A template applies to a service when every metric it needs has a series whose service label maps
to that service (and carries the labels the need names, e.g. `http_requests_total{code}`).
Dialects are tried in order, user mappings first, so a service that exports both its own metrics
and a mesh's sees its own.

This module knows nothing of investigators or notebooks; it only reads a metric listing.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Every signal the catalogue knows, with what it measures (the unit is the catalogue's promise).
SIGNALS: dict[str, str] = {
    "requests": "requests per second",
    "errors": "server errors (5xx, gRPC Internal/Unavailable/...) per second",
    "error_ratio": "share of requests that failed (0..1)",
    "codes": "responses per second by status code (4xx and 5xx), label `code`",
    "latency_p95": "95th percentile (or mean, where no histogram exists) latency in seconds",
    "cpu": "CPU cores used",
    "cpu_throttling": "share of CFS periods throttled (0..1)",
    "memory": "memory in use, bytes",
    "memory_limit": "memory limit, bytes",
    "restarts": "container restarts (a counter)",
    "oom": "1 where the last termination was OOMKilled",
    "pool_in_use": "connections of a pool in use",
    "pool_max": "a pool's maximum size",
    "pool_wait": "clients waiting for a connection (or waits per second)",
    "queue": "requests or messages queued",
    "consumer_lag": "messages a consumer group is behind",
    "cache_hit_ratio": "cache hits / lookups (0..1)",
    "disk_free_ratio": "free share of a volume or filesystem (0..1)",
    "cert_expiry": "unix time a TLS certificate expires",
    "kv_cache_usage": "KV-cache usage of an inference server (0..1)",
    "probe_success": "1 when a blackbox probe succeeds, 0 when it fails",
}

#: How `signals` and the board group signals when they say what is missing.
GROUPS: dict[str, tuple[str, ...]] = {
    "requests": ("requests",),
    "errors": ("errors", "error_ratio"),
    "latency": ("latency_p95",),
    "saturation": ("cpu", "cpu_throttling", "memory", "pool_in_use", "pool_wait", "queue", "consumer_lag",
                   "kv_cache_usage"),
    "cache": ("cache_hit_ratio",),
    "disk": ("disk_free_ratio",),
    "certificates": ("cert_expiry",),
    "probes": ("probe_success",),
}

#: Labels that name a workload in one exporter or another, most specific first.
SERVICE_LABELS = ("service", "exported_service", "destination_workload", "destination_service_name",
                  "destination_app", "service_name", "application", "app", "app_kubernetes_io_name", "job",
                  "exported_job", "container", "deployment", "statefulset", "node", "name")
#: Labels whose presence tells dialects apart (`http_requests_total{code}` vs `{status}`).
DISCRIMINATORS = ("code", "status", "response_code", "grpc_code", "http_response_status_code",
                  "http_status_code", "rpc_grpc_status_code", "statistic", "reporter", "handler", "area",
                  "resource", "state", "db_client_connection_state", "envoy_response_code_class",
                  "envoy_cluster_name", "command", "consumergroup", "persistentvolumeclaim", "mountpoint",
                  "pod", "namespace", "instance")
#: Labels naming the other end of a call (topology discovery, dependencies with no series).
PEER_LABELS = ("source_workload", "client", "server", "server_address", "peer_service", "net_peer_name",
               "dst_deployment")
#: Workload labels cluster-level exporters group by (mapped to a service by pod name).
WORKLOAD = ("namespace", "pod", "container")

_SERVER_ERR_GRPC = "Unknown|DeadlineExceeded|Unimplemented|Internal|Unavailable|DataLoss"
_NEED = re.compile(r"^(?P<metric>[^{]+?)(?:\{(?P<labels>[^}]*)\})?$")


@dataclass(frozen=True)
class Template:
    """One way to read a signal: a PromQL template and the metrics it needs to exist."""

    query: str
    needs: tuple[str, ...]  # "metric" or "metric{label,label}"; metric may be a regex
    note: str = ""  # shown next to the signal, e.g. "mean, no histogram"

    def parsed_needs(self) -> list[tuple[re.Pattern[str], tuple[str, ...]]]:
        """Each need as (metric-name regex, labels that must be present)."""
        out = []
        for need in self.needs:
            m = _NEED.match(need.strip())
            if not m:
                raise ValueError(f"bad need {need!r}")
            labels = tuple(x.strip() for x in (m.group("labels") or "").split(",") if x.strip())
            out.append((re.compile(m.group("metric")), labels))
        return out


@dataclass(frozen=True)
class Dialect:
    """An exporter's metric names and labels for the signals it carries."""

    name: str
    title: str
    service_labels: tuple[str, ...]
    templates: Mapping[str, Sequence[Template]]
    group: tuple[str, ...] = ()  # extra labels to group by (cluster exporters: namespace, pod, container)
    services: tuple[str, ...] = ()  # a user mapping may name its services instead of relying on `needs`
    user: bool = False


def T(query: str, *needs: str, note: str = "") -> Template:  # noqa: N802 - reads as a table row
    """Shorthand for the built-in tables below."""
    return Template(query, tuple(needs), note)


def _hist(metric: str, scale: str = "") -> str:
    q = f"histogram_quantile(0.95, sum by ($by, le) (rate({metric}{{$sel}}[2m])))"
    return f"{q} / {scale}" if scale else q


def _ratio(num: str, den: str) -> str:
    return f"({num}) / ({den})"


def _red(metric: str, code: str, err: str, extra: str = "") -> dict[str, list[Template]]:
    """requests / errors / codes / error ratio from one counter with a status-code label."""
    sel = "$sel" + (f", {extra}" if extra else "")
    req = f"sum by ($by) (rate($m0{{{sel}}}[2m]))"
    errs = f"sum by ($by) (rate($m0{{{sel}, {code}=~\"{err}\"}}[2m]))"
    need = f"{metric}{{{code}}}"
    return {
        "requests": [T(req, need)],
        "errors": [T(errs, need)],
        "error_ratio": [T(_ratio(errs, req), need)],
        "codes": [T(f"sum by ($by, code) (label_replace(rate($m0{{{sel}, {code}=~\"4.*|5.*\"}}[2m]), "
                    f"\"code\", \"$$1\", \"{code}\", \"(.*)\"))", need)],
    }


def _merge(*parts: Mapping[str, Sequence[Template]]) -> dict[str, list[Template]]:
    out: dict[str, list[Template]] = {}
    for p in parts:
        for k, v in p.items():
            out.setdefault(k, []).extend(v)
    return out


_APP = ("service", "service_name", "application", "app", "app_kubernetes_io_name", "job", "container")

#: Built-in dialects, most specific first (a service's own metrics before a mesh's or a proxy's).
BUILTIN: tuple[Dialect, ...] = (
    Dialect("prometheus", "Prometheus client defaults (http_requests_total{code})", _APP, _merge(
        _red("http_requests_total", "code", "5.."),
        {"latency_p95": [T(_hist("$m0"), "http_request_duration_seconds_bucket")]})),
    Dialect("fastapi", "FastAPI/Starlette instrumentator (http_requests_total{status=\"5xx\"})", _APP, _merge(
        _red("http_requests_total", "status", "5.*"),
        {"latency_p95": [T(_hist("$m0"), "http_request_duration_(?:highr_)?seconds_bucket")]})),
    Dialect("micrometer", "Micrometer / Spring Boot (http_server_requests_seconds, hikaricp, jvm)", _APP, _merge(
        _red("http_server_requests_seconds_count", "status", "5.."),
        {"latency_p95": [T(_hist("$m0"), "http_server_requests_seconds_bucket"),
                         T("sum by ($by) (rate($m0{$sel}[2m])) / sum by ($by) (rate($m1{$sel}[2m]))",
                           "http_server_requests_seconds_sum", "http_server_requests_seconds_count",
                           note="mean, no histogram")],
         "pool_in_use": [T("sum by ($by) ($m0{$sel})", "hikaricp_connections_active")],
         "pool_max": [T("sum by ($by) ($m0{$sel})", "hikaricp_connections_max")],
         "pool_wait": [T("sum by ($by) ($m0{$sel})", "hikaricp_connections_pending")]})),
    Dialect("otel", "OpenTelemetry semantic conventions (http_server_request_duration_seconds)", _APP, _merge(
        _red("http_server_request_duration_seconds_count", "http_response_status_code", "5.."),
        {"latency_p95": [T(_hist("$m0"), "http_server_request_duration_seconds_bucket")]},
        _red("http_server_duration_(?:milliseconds|seconds)_count", "http_status_code", "5.."),
        {"latency_p95": [T(_hist("$m0", "1000"), "http_server_duration_milliseconds_bucket"),
                         T(_hist("$m0"), "http_server_duration_seconds_bucket")]},
        _red("rpc_server_duration_(?:milliseconds|seconds)_count", "rpc_grpc_status_code", "2|4|12|13|14|15"),
        {"latency_p95": [T(_hist("$m0", "1000"), "rpc_server_duration_milliseconds_bucket"),
                         T(_hist("$m0"), "rpc_server_duration_seconds_bucket")],
         "pool_in_use": [T('sum by ($by) ($m0{$sel, state="used"})', "db_client_connections_usage{state}"),
                         T('sum by ($by) ($m0{$sel, db_client_connection_state="used"})',
                           "db_client_connection_count{db_client_connection_state}")],
         "pool_max": [T("sum by ($by) ($m0{$sel})", "db_client_connections?_max")],
         "pool_wait": [T("sum by ($by) ($m0{$sel})", "db_client_connections?_pending_requests")]})),
    Dialect("grpc", "gRPC server interceptors (grpc_server_handled_total{grpc_code})", _APP, _merge(
        _red("grpc_server_handled_total", "grpc_code", _SERVER_ERR_GRPC),
        {"latency_p95": [T(_hist("$m0"), "grpc_server_handling_seconds_bucket")]})),
    Dialect("go_sql", "Go database/sql stats (go_sql_stats_connections_*)", _APP, {
        "pool_in_use": [T("sum by ($by) ($m0{$sel})", "go_sql_stats_connections_in_use")],
        "pool_max": [T("sum by ($by) ($m0{$sel})", "go_sql_stats_connections_max_open")],
        "pool_wait": [T("sum by ($by) (rate($m0{$sel}[2m]))",
                        "go_sql_stats_connections_(?:wait_count_total|waited_for(?:_total)?)")]}),
    Dialect("db_pool", "generic connection pool gauges (*_pool_*_in_use / *_max)", _APP, {
        "pool_in_use": [T("sum by ($by) ($m0{$sel})", r"[a-z0-9_:]*pool[a-z0-9_]*_(?:in_use|active|used|busy)")],
        "pool_max": [T("sum by ($by) ($m0{$sel})", r"[a-z0-9_:]*pool[a-z0-9_]*_(?:max|size|limit|capacity)")],
        "pool_wait": [T("sum by ($by) (rate($m0{$sel}[2m]))", r"[a-z0-9_:]*pool[a-z0-9_]*_wait[a-z_]*_total")]}),
    Dialect("pgbouncer", "pgbouncer exporter", _APP, {
        "pool_in_use": [T("sum by ($by) ($m0{$sel})", "pgbouncer_pools_server_active_connections")],
        "pool_max": [T("sum by ($by) ($m0{$sel})", "pgbouncer_databases_pool_size")],
        "pool_wait": [T("sum by ($by) ($m0{$sel})", "pgbouncer_pools_client_waiting_connections")]}),
    Dialect("postgres", "postgres_exporter (pg_stat_activity_count / pg_settings_max_connections)", _APP, {
        "pool_in_use": [T("sum by ($by) ($m0{$sel})", "pg_stat_activity_count")],
        "pool_max": [T("max by ($by) ($m0{$sel})", "pg_settings_max_connections")]}),
    Dialect("redis", "redis_exporter (keyspace hits / misses)", _APP, {
        "cache_hit_ratio": [T("sum by ($by) (rate($m0{$sel}[2m])) / (sum by ($by) (rate($m0{$sel}[2m])) + "
                              "sum by ($by) (rate($m1{$sel}[2m])))",
                              "redis_keyspace_hits_total", "redis_keyspace_misses_total")]}),
    Dialect("memcached", "memcached_exporter (get hits / misses)", _APP, {
        "cache_hit_ratio": [
            T('sum by ($by) (rate($m0{$sel, command="get", status="hit"}[2m])) / '
              'sum by ($by) (rate($m0{$sel, command="get"}[2m]))', "memcached_commands_total{command,status}"),
            T("sum by ($by) (rate($m0{$sel}[2m])) / (sum by ($by) (rate($m0{$sel}[2m])) + "
              "sum by ($by) (rate($m1{$sel}[2m])))", "memcached_get_hits_total", "memcached_get_misses_total")]}),
    Dialect("cache", "generic *_cache_hits_total / *_cache_misses_total counters", _APP, {
        "cache_hit_ratio": [T("sum by ($by) (rate($m0{$sel}[2m])) / (sum by ($by) (rate($m0{$sel}[2m])) + "
                              "sum by ($by) (rate($m1{$sel}[2m])))",
                              r"[a-z0-9_:]*cache[a-z0-9_]*_hits?_total", r"[a-z0-9_:]*cache[a-z0-9_]*_miss(?:es)?_total")]}),
    # the consumer group names the consumer (the service that falls behind), not the exporter
    Dialect("kafka", "kafka_exporter consumer-group lag", ("consumergroup",), {
        "consumer_lag": [T("sum by ($by) ($m0{$sel})", "kafka_consumergroup_lag(?:_sum)?")]}),
    Dialect("rabbitmq", "RabbitMQ exporter queue depth", _APP, {
        "queue": [T("sum by ($by) ($m0{$sel})", "rabbitmq_queue_messages_ready")]}),
    Dialect("vllm", "vLLM (vllm:* / vllm_*)", _APP, {
        "latency_p95": [T(_hist("$m0"), "vllm[:_]e2e_request_latency_seconds_bucket")],
        "requests": [T("sum by ($by) (rate($m0{$sel}[2m]))", "vllm[:_]request_success_total")],
        "kv_cache_usage": [T("max by ($by) ($m0{$sel})", "vllm[:_](?:gpu|kv)_cache_usage_perc")],
        "queue": [T("sum by ($by) ($m0{$sel})", "vllm[:_]num_requests_waiting")]}),
    Dialect("tei", "Text Embeddings Inference (te_*)", _APP, {
        "requests": [T("sum by ($by) (rate($m0{$sel}[2m]))", "te_request_count(?:_total)?")],
        "errors": [T("sum by ($by) (rate($m0{$sel}[2m]))", "te_request_failure(?:_total)?")],
        "error_ratio": [T("sum by ($by) (rate($m0{$sel}[2m])) / sum by ($by) (rate($m1{$sel}[2m]))",
                          "te_request_failure(?:_total)?", "te_request_count(?:_total)?")],
        "latency_p95": [T(_hist("$m0"), "te_request_duration_bucket")],
        "queue": [T("sum by ($by) ($m0{$sel})", "te_queue_size")]}),
    Dialect("triton", "NVIDIA Triton (nv_inference_*)", _APP, {
        "requests": [T("sum by ($by) (rate($m0{$sel}[2m])) + sum by ($by) (rate($m1{$sel}[2m]))",
                       "nv_inference_request_success", "nv_inference_request_failure")],
        "errors": [T("sum by ($by) (rate($m0{$sel}[2m]))", "nv_inference_request_failure")],
        "error_ratio": [T("sum by ($by) (rate($m0{$sel}[2m])) / (sum by ($by) (rate($m0{$sel}[2m])) + "
                          "sum by ($by) (rate($m1{$sel}[2m])))",
                          "nv_inference_request_failure", "nv_inference_request_success")],
        "latency_p95": [T("sum by ($by) (rate($m0{$sel}[2m])) / sum by ($by) (rate($m1{$sel}[2m])) / 1e6",
                          "nv_inference_request_duration_us", "nv_inference_request_success",
                          note="mean, no histogram")],
        "queue": [T("sum by ($by) ($m0{$sel})", "nv_inference_pending_request_count")]}),
    Dialect("istio", "Istio / Envoy sidecars (istio_requests_total{destination_workload})",
            ("destination_workload", "destination_service_name", "destination_app"), _merge(
                _red("istio_requests_total", "response_code", "5..", extra='reporter!="source"'),
                {"latency_p95": [T('histogram_quantile(0.95, sum by ($by, le) (rate($m0{$sel, reporter!="source"}'
                                   '[2m]))) / 1000', "istio_request_duration_milliseconds_bucket")]})),
    Dialect("envoy", "Envoy proxy stats (envoy_http_downstream_rq_*, envoy_cluster_upstream_rq_*)", _APP, {
        "requests": [T("sum by ($by) (rate($m0{$sel}[2m]))", "envoy_http_downstream_rq_total"),
                     T("sum by ($by) (rate($m0{$sel}[2m]))", "envoy_cluster_upstream_rq_total")],
        "errors": [T('sum by ($by) (rate($m0{$sel, envoy_response_code_class="5"}[2m]))',
                     "envoy_http_downstream_rq_xx{envoy_response_code_class}"),
                   T('sum by ($by) (rate($m0{$sel, envoy_response_code_class="5"}[2m]))',
                     "envoy_cluster_upstream_rq_xx{envoy_response_code_class}")],
        "error_ratio": [T('sum by ($by) (rate($m0{$sel, envoy_response_code_class="5"}[2m])) / '
                          'sum by ($by) (rate($m1{$sel}[2m]))',
                          "envoy_http_downstream_rq_xx{envoy_response_code_class}", "envoy_http_downstream_rq_total"),
                        T('sum by ($by) (rate($m0{$sel, envoy_response_code_class="5"}[2m])) / '
                          'sum by ($by) (rate($m1{$sel}[2m]))',
                          "envoy_cluster_upstream_rq_xx{envoy_response_code_class}", "envoy_cluster_upstream_rq_total")],
        "codes": [T('sum by ($by, code) (label_replace(rate($m0{$sel, envoy_response_code_class=~"4|5"}[2m]), '
                    '"code", "$${1}xx", "envoy_response_code_class", "(.*)"))',
                    "envoy_http_downstream_rq_xx{envoy_response_code_class}")],
        "latency_p95": [T(_hist("$m0", "1000"), "envoy_http_downstream_rq_time_bucket"),
                        T(_hist("$m0", "1000"), "envoy_cluster_upstream_rq_time_bucket")]}),
    Dialect("nginx", "ingress-nginx (nginx_ingress_controller_requests{status,service})",
            ("exported_service", "service", "ingress"), _merge(
                _red("nginx_ingress_controller_requests", "status", "5.."),
                {"latency_p95": [T(_hist("$m0"), "nginx_ingress_controller_request_duration_seconds_bucket")]})),
    Dialect("cloudwatch", "per-node latency{statistic} / requests / availability (CloudWatch-style)",
            ("service", "node", "name", "job", "app"), {
                "requests": [T('sum by ($by) ($m0{$sel, statistic=~"Sum|sum|SUM"})', "requests{statistic}"),
                             T("sum by ($by) ($m0{$sel})", "requests")],
                "error_ratio": [T('clamp_min(1 - avg by ($by) ($m0{$sel, statistic=~"Average|average|avg|Avg|AVERAGE"}) / 100, 0)',
                                  "availability{statistic}"),
                                T("clamp_min(1 - avg by ($by) ($m0{$sel}) / 100, 0)", "availability")],
                "latency_p95": [T('max by ($by) ($m0{$sel, statistic=~"p95|P95"})', "latency{statistic}"),
                                T("max by ($by) ($m0{$sel})", "latency", note="single statistic")]}),
    Dialect("cadvisor", "cAdvisor container metrics", _APP + ("pod",), {
        "cpu_throttling": [T("sum by ($by) (rate($m0{$sel}[2m])) / sum by ($by) (rate($m1{$sel}[2m]))",
                             "container_cpu_cfs_throttled_periods_total", "container_cpu_cfs_periods_total")],
        "cpu": [T("sum by ($by) (rate($m0{$sel}[2m]))", "container_cpu_usage_seconds_total")],
        "memory": [T("max by ($by) ($m0{$sel})", "container_memory_working_set_bytes")]},
        group=WORKLOAD),
    Dialect("kube_state", "kube-state-metrics", _APP + ("pod",), {
        "memory_limit": [T('max by ($by) ($m0{$sel, resource="memory"})',
                           "kube_pod_container_resource_limits{resource}")],
        "restarts": [T("max by ($by) ($m0{$sel})", "kube_pod_container_status_restarts_total")],
        "oom": [T('max by ($by) ($m0{$sel, reason="OOMKilled"})',
                  "kube_pod_container_status_last_terminated_reason")]}, group=WORKLOAD),
    Dialect("jvm", "JVM heap (jvm_memory_used_bytes{area=\"heap\"})", _APP, {
        "memory": [T('sum by ($by) ($m0{$sel, area="heap"})', "jvm_memory_used_bytes{area}")],
        "memory_limit": [T('sum by ($by) ($m0{$sel, area="heap"})', "jvm_memory_max_bytes{area}")]},
        group=WORKLOAD),
    Dialect("kubelet", "kubelet volume stats", _APP + ("persistentvolumeclaim",), {
        "disk_free_ratio": [T("$m0{$sel} / $m1{$sel}", "kubelet_volume_stats_available_bytes",
                              "kubelet_volume_stats_capacity_bytes")]}),
    Dialect("node", "node_exporter filesystems", _APP + ("instance",), {
        "disk_free_ratio": [T('$m0{$sel, fstype!~"tmpfs|overlay|squashfs"} / $m1{$sel, fstype!~"tmpfs|overlay|squashfs"}',
                              "node_filesystem_avail_bytes", "node_filesystem_size_bytes")]}),
    Dialect("blackbox", "blackbox exporter probes", ("service", "app", "job", "instance", "target"), {
        "cert_expiry": [T("min by ($by) ($m0{$sel})", "probe_ssl_earliest_cert_expiry")],
        "probe_success": [T("min by ($by) ($m0{$sel})", "probe_success")]}),
    # Last: the caller's view of a server (how a dependency with no series of its own is read).
    Dialect("client", "client-side metrics naming their server (server_address, peer_service, envoy_cluster_name)",
            ("server_address", "peer_service", "net_peer_name", "envoy_cluster_name"), _merge(
                _red("http_client_request_duration_seconds_count", "http_response_status_code", "5.."),
                {"latency_p95": [T(_hist("$m0"), "http_client_request_duration_seconds_bucket")]},
                _red("envoy_cluster_upstream_rq_xx", "envoy_response_code_class", "5"),
                {"latency_p95": [T(_hist("$m0", "1000"), "envoy_cluster_upstream_rq_time_bucket")]})),
)


class MappingError(ValueError):
    """A `[signals.<name>]` mapping that cannot work; the message names the field and the fix."""


_PLACEHOLDER_OK = {"sel", "by"}


def check_template(where: str, query: str) -> None:
    """Raise MappingError unless `query` is a usable template (placeholders, PromQL syntax)."""
    try:
        names = {m.group("named") or m.group("braced") for m in string.Template.pattern.finditer(query)
                 if m.group("named") or m.group("braced")}
    except (ValueError, TypeError) as e:  # pragma: no cover - pattern is fixed
        raise MappingError(f"{where}: {e}") from None
    bad = {n for n in names if n not in _PLACEHOLDER_OK and not re.fullmatch(r"m\d+", n)}
    if bad:
        raise MappingError(f"{where}: unknown placeholder ${sorted(bad)[0]}; use $sel, $by and $m0.. only")
    if "sel" not in names:
        raise MappingError(f"{where}: the query must contain $sel inside its selector (e.g. my_total{{$sel}}) "
                           f"so it can be narrowed to one service")
    if "by" not in names:
        raise MappingError(f"{where}: the query must group by $by (e.g. sum by ($by) (...)) so each result "
                           f"names its service")
    sample = render(query, 'service!=""', "service", ["m0"] * 10)
    from incidentbook.telemetry.promql.common import parse

    try:
        parse(sample)
    except Exception as e:  # noqa: BLE001 - any parse failure is the user's to fix
        raise MappingError(f"{where}: not valid PromQL once filled in ({str(e).splitlines()[0]}); "
                           f"fix the query") from None


def dialect_from_mapping(name: str, spec: Mapping[str, Any]) -> Dialect:
    """A user dialect from one `[signals.<name>]` table (already shape-checked by the config model).

    `match` (a regex of a metric name) decides which services it applies to, or `services` lists
    them; each signal key holds one PromQL template.
    """
    where = f"[signals.{name}]"
    match = str(spec.get("match") or "")
    services = tuple(str(s) for s in spec.get("services") or ())
    if not match and not services:
        raise MappingError(f"{where}: set match = \"<metric name regex>\" or services = [\"...\"] so it knows "
                           f"which services it applies to")
    if match:
        try:
            re.compile(match)
        except re.error as e:
            raise MappingError(f"{where} match: not a valid regular expression ({e}); fix the pattern") from None
    label = str(spec.get("service_label") or "service")
    if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", label):
        raise MappingError(f"{where} service_label: {label!r} is not a label name; use e.g. \"service\" or \"app\"")
    templates: dict[str, list[Template]] = {}
    for sig, query in spec.items():
        if sig in ("match", "services", "service_label", "description"):
            continue
        if sig not in SIGNALS:
            raise MappingError(f"{where}: unknown signal {sig!r}; use one of: {', '.join(SIGNALS)}")
        if not isinstance(query, str) or not query.strip():
            raise MappingError(f"{where} {sig}: give a PromQL template string")
        check_template(f"{where} {sig}", query)
        templates[sig] = [Template(query, (match,) if match else ())]
    if not templates:
        raise MappingError(f"{where}: no signal queries; add e.g. errors = 'sum by ($by) (rate(x_total{{$sel}}[2m]))'")
    return Dialect(name, str(spec.get("description") or f"[signals.{name}] in incidentbook.toml"), (label,),
                   templates, services=services, user=True)


def escape(value: str) -> str:
    """Escape a label value for a double-quoted PromQL matcher (quotes, backslashes, newlines)."""
    return (value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
            .replace("\t", "\\t"))


#: Labels whose values carry a suffix (`checkout-7d9f-x`, `checkout:8080`): matched by prefix.
FUZZY = ("pod", "instance", "target")


def service_matcher(label: str, service: str) -> str:
    """A matcher selecting one service's series by `label` (prefix match for pod-like labels)."""
    if label in FUZZY:
        return f'{label}=~"{escape(re.escape(service))}([-.:/].*)?"'
    return f'{label}="{escape(service)}"'


def render(query: str, sel: str, by: str, metrics: Sequence[str]) -> str:
    """Fill a template's placeholders."""
    values = {"sel": sel, "by": by, **{f"m{i}": m for i, m in enumerate(metrics)}}
    return string.Template(query).safe_substitute(values)


# -- discovery -------------------------------------------------------------------------------------

def listing_query() -> str:
    """The one series listing discovery needs: metric names with their workload labels."""
    return f"group by (__name__, {', '.join(dict.fromkeys(SERVICE_LABELS + DISCRIMINATORS + PEER_LABELS))}) " \
           '({__name__=~".+"})'


def map_service(value: str, services: Iterable[str]) -> str | None:
    """The known service a label value names: exactly, or as a pod/host name (`checkout-7d9f-x`)."""
    known = services if isinstance(services, (set, frozenset, dict)) else set(services)
    if not value:
        return None
    if value in known:
        return value
    v = value.split("|")[-1] if "|" in value else value  # Envoy cluster names: outbound|443||host
    host = re.sub(r"^[a-z]+://", "", v).split("/")[0].split(":")[0]
    if host in known:
        return host
    first_part = host.split(".")[0]
    if first_part in known:
        return first_part
    # Envoy / mesh cluster names carry namespace and port around the service: genai_generate-api_8080
    parts = [x for x in re.split(r"[_|]", v) if x]
    if len(parts) > 1:
        hit = next((x for x in parts if x in known), None)
        if hit:
            return hit
    return max((s for s in known if first_part.startswith(s + "-")), key=len, default=None)


@dataclass(frozen=True)
class Resolved:
    """Which dialect answers a signal for a service, and with which metrics."""

    signal: str
    service: str
    dialect: str
    label: str  # the label naming the service in those series
    metrics: tuple[str, ...]
    template: Template
    group: tuple[str, ...] = ()
    values: tuple[str, ...] = ()  # the label values that named this service (pod names, group names)

    @property
    def by(self) -> str:
        return ", ".join(dict.fromkeys((self.label, *self.group)))

    def selector(self) -> str:
        """The matcher narrowing the template to this service (its own label values where known)."""
        vals = [v for v in self.values if v != self.service]
        if not vals:
            return service_matcher(self.label, self.service)
        if len(self.values) == 1:
            return f'{self.label}="{escape(self.values[0])}"'
        return f'{self.label}=~"{escape("|".join(re.escape(v) for v in sorted(self.values)[:50]))}"'


    def query(self) -> str:
        """The query for this one service (its label value escaped)."""
        return render(self.template.query, self.selector(), self.by, self.metrics)

    def to_dict(self) -> dict[str, Any]:
        return {"signal": self.signal, "dialect": self.dialect, "metrics": list(self.metrics),
                "label": self.label, "query": self.query(), "note": self.template.note}


@dataclass
class Discovery:
    """What one series listing says each service exports, and the signals that follow."""

    services: list[str]
    dialects: tuple[Dialect, ...]
    # service -> metric -> (labels present, service labels that named it)
    index: dict[str, dict[str, tuple[frozenset[str], frozenset[str]]]] = field(default_factory=dict)
    resolved_map: dict[tuple[str, str], Resolved | None] = field(default_factory=dict)
    values: dict[tuple[str, str], set[str]] = field(default_factory=dict)  # (service, label) -> raw values
    listed: bool = True  # False when the source could not list its series

    def without_own_series(self) -> list[str]:
        """Services seen only through other services' series (client metrics naming them, probes).

        Such a node is an outside dependency (a third-party API): nobody scrapes it directly.
        """
        peer = {"server_address", "peer_service", "net_peer_name", "envoy_cluster_name", "instance", "target"}
        out = []
        for svc, metrics in self.index.items():
            if metrics and all(by <= peer for _, by in metrics.values()):
                out.append(svc)
        return sorted(out)

    def metrics_of(self, service: str) -> list[str]:
        """Metric names with at least one series of `service`."""
        return sorted(self.index.get(service, {}))

    def resolved(self, service: str, signal: str) -> Resolved | None:
        """The first dialect whose template for `signal` has everything it needs for `service`."""
        key = (service, signal)
        if key not in self.resolved_map:
            self.resolved_map[key] = self._resolve(service, signal)
        return self.resolved_map[key]

    def _resolve(self, service: str, signal: str) -> Resolved | None:
        mine = self.index.get(service, {})
        for d in self.dialects:
            for t in d.templates.get(signal, ()):
                if d.user and d.services and service in d.services and not t.needs:
                    return Resolved(signal, service, d.name, d.service_labels[0], (), t, d.group)
                if d.user and d.services and service not in d.services:
                    continue
                if not t.needs:
                    continue
                found = _match_needs(t, mine, d.service_labels)
                if found is not None:
                    label, metrics = found
                    vals = tuple(sorted(self.values.get((service, label), ())))
                    return Resolved(signal, service, d.name, label, metrics, t, d.group, vals)
        return None

    def signals_of(self, service: str) -> dict[str, Resolved | None]:
        """Every catalogue signal for a service (None where nothing readable was found)."""
        return {s: self.resolved(service, s) for s in SIGNALS}

    def query_all(self, signal: str, services: Iterable[str] | None = None) -> list[tuple[str, Resolved, list[str]]]:
        """One query per (dialect, label, metrics) answering `signal`, and the services it answers for.

        Each query covers every service using that dialect (`label!=""`), so an investigation runs a
        handful of queries whatever the number of services.
        """
        groups: dict[tuple[Any, ...], tuple[Resolved, list[str]]] = {}
        for svc in services if services is not None else self.services:
            r = self.resolved(svc, signal)
            if r is None:
                continue
            key = (r.dialect, r.label, r.metrics, r.template.query)
            groups.setdefault(key, (r, []))[1].append(svc)
        out = []
        for r, svcs in groups.values():
            sel = r.selector() if len(svcs) == 1 else f'{r.label}!=""'
            out.append((render(r.template.query, sel, r.by, r.metrics), r, svcs))
        return out

    def coverage(self, services: Iterable[str] | None = None) -> dict[str, Any]:
        """Per service, which signal groups are readable; and the services with no error/latency signal.

        The shape is the `coverage` field of `eval --json`: `services` (count), `readable` (services
        with an error or latency signal), `no_red` (services with neither), `missing` (service ->
        groups missing), `dialects` (service -> dialects used).
        """
        svcs = list(services if services is not None else self.services)
        missing: dict[str, list[str]] = {}
        dialects: dict[str, list[str]] = {}
        no_red = []
        for s in svcs:
            sig = self.signals_of(s)
            miss = [g for g, names in GROUPS.items() if not any(sig.get(n) for n in names)]
            missing[s] = miss
            dialects[s] = sorted({r.dialect for r in sig.values() if r is not None})
            if "errors" in miss and "latency" in miss:
                no_red.append(s)
        return {"services": len(svcs), "readable": len(svcs) - len(no_red), "no_red": no_red,
                "missing": missing, "dialects": dialects, "listed": self.listed}


def _match_needs(t: Template, mine: Mapping[str, tuple[frozenset[str], frozenset[str]]],
                 service_labels: Sequence[str]) -> tuple[str, tuple[str, ...]] | None:
    """(service label, metric names) when every need of `t` exists for the service, else None."""
    metrics: list[str] = []
    label: str | None = None
    for rx, labels in t.parsed_needs():
        hit = None
        for name in sorted(mine):
            present, named_by = mine[name]
            if rx.fullmatch(name) and all(lab in present for lab in labels):
                lab = next((x for x in service_labels if x in named_by), None)
                if lab is not None and (label is None or lab == label):
                    hit = (name, lab)
                    break
        if hit is None:
            return None
        metrics.append(hit[0])
        label = label or hit[1]
    return (label, tuple(metrics)) if label else None


class Catalogue:
    """Built-in dialects plus the user's `[signals.<name>]` mappings (which come first)."""

    def __init__(self, mappings: Mapping[str, Any] | None = None,
                 dialects: Sequence[Dialect] = BUILTIN) -> None:
        user = [dialect_from_mapping(n, _plain(spec)) for n, spec in (mappings or {}).items()]
        self.dialects: tuple[Dialect, ...] = (*user, *dialects)

    def discover(self, listing: Any, services: Sequence[str]) -> Discovery:
        """Index a listing frame (`__name__` plus label columns; one row per series) by service."""
        disc = Discovery(list(services), self.dialects)
        if listing is None or len(listing) == 0 or "__name__" not in getattr(listing, "columns", ()):
            disc.listed = False
            return disc
        known = set(services)
        cols = [c for c in listing.columns if c not in ("timestamp", "value")]
        svc_cols = [c for c in SERVICE_LABELS + ("pod", "instance", "persistentvolumeclaim", "consumergroup",
                                                 "target", "server_address", "peer_service", "net_peer_name",
                                                 "envoy_cluster_name") if c in cols]
        acc: dict[str, dict[str, tuple[set[str], set[str]]]] = {}
        vals: dict[tuple[str, str], set[str]] = {}
        rows = listing[cols].drop_duplicates()
        for row in rows.itertuples(index=False):
            labels = {c: str(v) for c, v in zip(cols, row) if isinstance(v, str) and v and v not in ("nan", "None")}
            name = labels.get("__name__", "")
            if not name:
                continue
            present = set(labels)
            for col in svc_cols:
                v = labels.get(col)
                svc = map_service(v, known) if v else None
                if svc is None and col == "persistentvolumeclaim" and v:
                    svc = map_service(v.partition("-")[2], known)  # <template>-<pod>
                if svc is None:
                    continue
                p, by = acc.setdefault(svc, {}).setdefault(name, (set(), set()))
                p.update(present)
                by.add(col)
                vals.setdefault((svc, col), set()).add(v)
        disc.index = {s: {m: (frozenset(p), frozenset(b)) for m, (p, b) in ms.items()} for s, ms in acc.items()}
        disc.values = vals
        return disc


def list_series(telemetry: Any, start: Any, end: Any) -> tuple[Any, list[str]]:
    """Run the discovery listing against a source: (frame, errors). One instant query at `end`.

    `last_over_time` over the window keeps series that stopped before its end (a crashed
    service); where the backend drops metric names from it, a plain listing at `end` is used.
    """
    import pandas as pd

    from incidentbook.telemetry.bundle import to_utc

    t0, t1 = to_utc(start), to_utc(end)
    span = max(int((t1 - t0).total_seconds()), 60)
    base = listing_query()
    wide = base.replace('({__name__=~".+"})', f'(last_over_time({{__name__=~".+"}}[{span}s]))')
    errors: list[str] = []
    for q in (wide, base):
        try:
            safe = getattr(telemetry, "safe_query", None)
            if safe is not None:
                res = safe(q, t1)
                if res.status == "error":
                    errors.append(f"{q}: {res.error}")
                    continue
                df = res.data
            else:
                df = telemetry.query(q, t1)
        except Exception as e:  # noqa: BLE001 - a backend failure is reported, not raised
            errors.append(f"{q}: {type(e).__name__}: {e}")
            continue
        if df is not None and len(df) and "__name__" in df.columns:
            return df, []
    return pd.DataFrame(), errors


def discover(telemetry: Any, services: Sequence[str], start: Any, end: Any,
             mappings: Mapping[str, Any] | None = None) -> Discovery:
    """Discovery over a live source or bundle: which signal each service has, in which dialect.

    With no `services`, every value of a workload label in the listing counts as one.
    """
    frame, _ = list_series(telemetry, start, end)
    svcs = list(services) or discovered_services(frame)
    return Catalogue(mappings).discover(frame, svcs)


def discovered_services(frame: Any) -> list[str]:
    """Service names a listing carries in its workload labels (for sources without a service list)."""
    if frame is None or len(frame) == 0:
        return []
    out: set[str] = set()
    for col in ("service", "exported_service", "destination_workload", "service_name", "application", "app",
                "app_kubernetes_io_name", "job"):
        if col in frame.columns:
            out |= {str(v) for v in frame[col].dropna().unique() if str(v) not in ("", "nan", "None")}
            if out:
                break
    return sorted(out)


def coverage_of(telemetry: Any, services: Sequence[str], start: Any, end: Any,
                mappings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The `coverage` document for a source or bundle (see Discovery.coverage); for eval reports."""
    return discover(telemetry, services, start, end, mappings).coverage()


def report(disc: Discovery, services: Sequence[str] | None = None) -> dict[str, Any]:
    """The `incidentbook signals --json` document: per service, each signal found (or missing)."""
    svcs = list(services) if services else list(disc.services)
    out = []
    for s in svcs:
        found = {k: r.to_dict() for k, r in disc.signals_of(s).items() if r is not None}
        out.append({"service": s, "signals": found, "missing": [k for k in SIGNALS if k not in found],
                    "dialects": sorted({v["dialect"] for v in found.values()}),
                    "metrics": len(disc.metrics_of(s))})
    return {"services": out, "coverage": disc.coverage(svcs), "note": coverage_message(disc.coverage(svcs))}


def check_mappings(disc: Discovery, telemetry: Any, start: Any, end: Any) -> list[str]:
    """Problems with the user's mappings against a live source or bundle (empty: all good).

    Each mapping must apply to at least one service, and each of its queries must run.
    """
    problems = []
    for d in disc.dialects:
        if not d.user:
            continue
        users = [s for s in disc.services for sig in d.templates
                 if (r := disc.resolved(s, sig)) is not None and r.dialect == d.name]
        if not users:
            how = (f"none of services {list(d.services)} is known here" if d.services
                   else f"no service exports a metric matching {d.templates and next(iter(d.templates.values()))[0].needs[0]!r}")
            problems.append(f"[signals.{d.name}]: applies to no service ({how}); fix match / services")
            continue
        svc = users[0]
        for sig in d.templates:
            r = disc.resolved(svc, sig)
            if r is None or r.dialect != d.name:
                continue
            q = r.query()
            res = telemetry.safe_query_range(q, start, end) if hasattr(telemetry, "safe_query_range") else None
            if res is not None and res.status == "error":
                problems.append(f"[signals.{d.name}] {sig}: the query failed for {svc} ({res.error}); fix the query")
            elif res is not None and res.status == "no_data":
                problems.append(f"[signals.{d.name}] {sig}: no data for {svc} ({q}); check the metric and labels")
    return problems


def _plain(spec: Any) -> dict[str, Any]:
    if hasattr(spec, "model_dump"):
        d: dict[str, Any] = spec.model_dump(exclude_none=True)
        return {k: v for k, v in d.items() if v not in ("", [], None)}
    return dict(spec)


def coverage_message(cov: Mapping[str, Any], limit: int = 8) -> str:
    """The board's line for services the investigation could not read ("" when all are readable)."""
    gaps = list(cov.get("no_red") or [])
    if not gaps:
        return ""
    names = ", ".join(gaps[:limit]) + (f" and {len(gaps) - limit} more" if len(gaps) > limit else "")
    return f"no readable error or latency signal for: {names} - add a mapping (docs/signals.md)"
