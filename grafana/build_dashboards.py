"""Generate the provisioned Grafana dashboards of persona-stream.

The dashboards are code, built with Grafana Labs' ``grafana-foundation-sdk`` (typed builders
generated from Grafana's own schemas); the JSON in ``grafana/dashboards/`` is the output and is
committed so that Grafana can provision it without Python. Change this script, then run::

    python grafana/build_dashboards.py           # rewrite grafana/dashboards/*.json
    python grafana/build_dashboards.py --check   # exit 1 if a committed file is out of date

Metric names come from ``app/runtime/metrics.py``; ``tests/unit/test_grafana.py`` checks that every
``persona_*`` name used here exists there. What each panel means and what to do when it turns
red is in ``docs/operations.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DataSourceRef,
    DynamicConfigValue,
    Threshold,
    ThresholdsMode,
    VariableOption,
    VariableRefresh,
    VariableSort,
)

DASHBOARDS = Path(__file__).resolve().parent / "dashboards"

# The Prometheus job that scrapes the workers (grafana/prometheus.yml).
WORKER_JOB = "persona-worker"
# Every panel queries the datasource picked in the `datasource` variable.
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
# Selector of the workers picked in the `instance` variable.
SEL = 'instance=~"$instance"'
RATE = "$__rate_interval"

GREEN, ORANGE, RED, BLUE = "green", "orange", "red", "blue"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


def _target(q: Query, ref_id: str) -> prometheus.Dataquery:
    target = prometheus.Dataquery().expr(q.expr).ref_id(ref_id).datasource(DATASOURCE)
    return target.legend_format(q.legend) if q.legend else target


def _thresholds(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    return (
        dash.ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=v, color=c) for v, c in steps])
    )


def _color(name: str, color: str) -> tuple[str, list[DynamicConfigValue]]:
    """An override giving the series ``name`` a fixed colour."""
    return name, [DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": color})]


class Ids:
    """Hands out panel ids in order; the SDK places the panels on the grid, row by row."""

    def __init__(self) -> None:
        self.last = 0

    def __call__(self) -> int:
        self.last += 1
        return self.last


def graph(
    ids: Ids,
    title: str,
    description: str,
    queries: Sequence[Query],
    unit: str,
    *,
    w: int = 12,
    h: int = 8,
    thresholds: dash.ThresholdsConfig | None = None,
    colors: Sequence[tuple[str, str]] = (),
    bars: bool = False,
    min_zero: bool = True,
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .id(ids())
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .span(w)
        .height(h)
        .unit(unit)
        .line_width(1)
        .fill_opacity(10)
        .show_points(common.VisibilityMode.NEVER)
        .legend(
            common_b.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["mean", "max", "lastNotNull"])
        )
        .tooltip(
            common_b.VizTooltipOptions()
            .mode(common.TooltipDisplayMode.MULTI)
            .sort(common.SortOrder.DESCENDING)
        )
    )
    if min_zero:
        panel = panel.min(0)
    if bars:
        panel = panel.draw_style(common.GraphDrawStyle.BARS).fill_opacity(60)
    if thresholds is not None:
        panel = panel.thresholds(thresholds).thresholds_style(
            common_b.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.LINE)
        )
    for name, color in colors:
        panel = panel.override_by_name(*_color(name, color))
    for i, q in enumerate(queries):
        panel = panel.with_target(_target(q, chr(ord("A") + i)))
    return panel


def single(
    ids: Ids,
    title: str,
    description: str,
    query: Query,
    unit: str,
    thresholds: dash.ThresholdsConfig,
    *,
    w: int = 4,
    h: int = 4,
    decimals: int | None = None,
) -> stat.Panel:
    panel = (
        stat.Panel()
        .id(ids())
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .span(w)
        .height(h)
        .unit(unit)
        .thresholds(thresholds)
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.AREA)
        .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .no_value("0")
        .with_target(_target(query, "A"))
    )
    return panel.decimals(decimals) if decimals is not None else panel


def _rate(metric: str, by: str = "") -> str:
    grouping = f"sum by ({by}) " if by else "sum"
    return f"{grouping}(rate({metric}{{{SEL}}}[{RATE}]))"


def _quantile(q: float, metric: str, by: str = "") -> str:
    grouping = f"le, {by}" if by else "le"
    return f"histogram_quantile({q}, sum by ({grouping}) (rate({metric}_bucket{{{SEL}}}[{RATE}])))"


def overview() -> dash.Dashboard:
    """The persona-overview dashboard."""
    ids = Ids()
    d = (
        dash.Dashboard("persona-stream overview")
        .uid("persona-overview")
        .description(
            "Throughput, data quality, latency, state and Redis serving of the persona-stream "
            "workers. Panels are explained in docs/operations.md."
        )
        .tags(["persona-stream"])
        .editable()
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
        .with_variable(
            dash.DatasourceVariable("datasource").label("Data source").type("prometheus")
        )
        .with_variable(
            dash.QueryVariable("instance")
            .label("Worker")
            .description("Worker instances (Prometheus `instance` label) to show.")
            .datasource(DATASOURCE)
            .query("label_values(persona_redis_pending_keys, instance)")
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            .all_value(".+")
            .current(VariableOption(selected=True, text=["All"], value=["$__all"]))
        )
    )

    # --- at a glance -----------------------------------------------------------------------
    d = d.with_row(dash.Row("At a glance").id(ids()))
    d = d.with_panel(
        single(
            ids,
            "Workers down",
            "Scrape targets of the worker job that do not answer GET /metrics. "
            "Anything above 0 is a worker that is stopped, crashed or unreachable.",
            Query(f'count(up{{job="{WORKER_JOB}"}} == 0) or vector(0)'),
            "none",
            _thresholds((None, GREEN), (1, RED)),
            decimals=0,
        )
    )
    d = d.with_panel(
        single(
            ids,
            "Events processed/s",
            "Valid input records applied to state per second, all topics and types.",
            Query(_rate("persona_events_processed_total")),
            "cps",
            _thresholds((None, BLUE)),
        )
    )
    d = d.with_panel(
        single(
            ids,
            "Dead-letter ratio",
            "Share of input records that were dead-lettered instead of processed.",
            Query(
                f"({_rate('persona_dead_letters_total')} or vector(0)) / clamp_min("
                f"({_rate('persona_events_processed_total')} or vector(0)) + "
                f"({_rate('persona_dead_letters_total')} or vector(0)), 1e-9)"
            ),
            "percentunit",
            _thresholds((None, GREEN), (0.01, ORANGE), (0.05, RED)),
            decimals=2,
        )
    )
    d = d.with_panel(
        single(
            ids,
            "Event lag p99",
            "99th percentile of record age when applied (now minus Kafka timestamp), "
            "worst topic. The histogram tops out at 60 s.",
            Query(f"max({_quantile(0.99, 'persona_event_lag_seconds', 'topic')})"),
            "s",
            _thresholds((None, GREEN), (5, ORANGE), (30, RED)),
        )
    )
    d = d.with_panel(
        single(
            ids,
            "Redis pending keys",
            "Changed keys waiting for Redis, all workers. Grows while Redis is slow or down; "
            "at PERSONA_REDIS_MAX_PENDING (default 100000) per worker, writes are skipped.",
            Query(f"sum(persona_redis_pending_keys{{{SEL}}})"),
            "short",
            _thresholds((None, GREEN), (10000, ORANGE), (50000, RED)),
            decimals=0,
        )
    )
    d = d.with_panel(
        single(
            ids,
            "Redis errors/s",
            "Failed Redis flushes per second. Keys stay pending and are retried.",
            Query(_rate("persona_redis_errors_total")),
            "cps",
            _thresholds((None, GREEN), (0.001, RED)),
        )
    )

    # --- stage health ----------------------------------------------------------------------
    d = d.with_row(dash.Row("Stage health").id(ids()))
    d = d.with_panel(
        graph(
            ids,
            "Stage agents up",
            "1 while a stage's agent runs and its code has not raised since its worker started; 0 once "
            "it crashed (until that worker restarts) or has no running actor. Alert PersonaAgentDown.",
            [Query(f"min by (agent) (persona_agent_up{{{SEL}}})", "{{agent}}")],
            "short",
            w=8,
            thresholds=_thresholds((None, RED), (1, GREEN)),
        )
    )
    d = d.with_panel(
        graph(
            ids,
            "Stage input lag",
            "Records between the committed offset and the end of each stage's input partitions, "
            "summed over the selected workers. Lag that grows while a stage is up is a backlog.",
            [Query(f"sum by (stage) (persona_stage_lag_records{{{SEL}}})", "{{stage}}")],
            "short",
            w=8,
        )
    )
    d = d.with_panel(
        graph(
            ids,
            "Stalled stages / agent crashes",
            "Stages with lag whose committed offset has not moved for PERSONA_STALL_SECONDS (alert "
            "PersonaStageStalled), and crashes of a stage's agent code in the interval.",
            [
                Query(f"sum by (stage) (persona_stage_stalled{{{SEL}}})", "stalled {{stage}}"),
                Query(
                    f"sum by (agent) (increase(persona_agent_crashes_total{{{SEL}}}[{RATE}]))",
                    "crashes {{agent}}",
                ),
            ],
            "short",
            w=8,
            bars=True,
        )
    )

    # --- throughput and data quality ---------------------------------------------------------
    d = d.with_row(dash.Row("Throughput and data quality").id(ids()))
    d = d.with_panel(
        graph(
            ids,
            "Events processed/s by type",
            "Valid input records applied to state per second, by topic and event type.",
            [Query(_rate("persona_events_processed_total", "topic, type"), "{{topic}} {{type}}")],
            "cps",
        )
    )
    d = d.with_panel(
        graph(
            ids,
            "Dead letters/s by reason",
            "Input records sent to the dead-letters topic per second, by source topic and "
            "reason code (see docs/events.md for what publishers should do).",
            [Query(_rate("persona_dead_letters_total", "topic, reason"), "{{topic}} {{reason}}")],
            "cps",
            thresholds=_thresholds((None, GREEN), (0.1, RED)),
        )
    )
    d = d.with_panel(
        graph(
            ids,
            "Duplicates/s by kind",
            "Input records skipped as duplicates: event_id = a publisher retry caught by the "
            "de-duplication window; offset = a record re-read after a restart or rebalance.",
            [Query(_rate("persona_duplicates_total", "topic, kind"), "{{topic}} {{kind}}")],
            "cps",
        )
    )
    d = d.with_panel(
        graph(
            ids,
            "HTTP events/s",
            "Events received on POST /v1/events per second, accepted or rejected.",
            [Query(_rate("persona_http_events_total", "outcome"), "{{outcome}}")],
            "cps",
            colors=[("accepted", GREEN), ("rejected", RED)],
        )
    )

    # --- identity --------------------------------------------------------------------------
    d = d.with_row(dash.Row("Identity resolution").id(ids()))
    d = d.with_panel(
        graph(
            ids,
            "Identity changes/s by change",
            "Records emitted to identity-changes per second: merged profiles, possible matches "
            "left for review, refused links (limits, blocklisted values, shared devices), splits.",
            [Query(_rate("persona_identity_changes_total", "change"), "{{change}}")],
            "cps",
            colors=[("merged", GREEN), ("refused", RED), ("possible_match", ORANGE)],
        )
    )
    d = d.with_panel(
        graph(
            ids,
            "Identity forwarded / aliases",
            "Input records ingest forwarded to the identity stage per second (only new identity "
            "information: first event of an anonymous id, new user or device ids, identify traits, "
            "every CRM record), and alias records (anonymous id to profile) the identity stage emitted.",
            [
                Query(_rate("persona_identity_forwarded_total", "topic"), "forwarded {{topic}}"),
                Query(_rate("persona_identity_aliases_total"), "aliases"),
            ],
            "cps",
        )
    )

    d = d.with_panel(
        graph(
            ids,
            "Redirected records / late session events",
            "Records that reached a profile an identity merge had absorbed and were sent on to its "
            "survivor, by cause (provisional: an anonymous id's first profile; merged: a merge of two "
            "profiles), and events that arrived after their session was emitted (counted in the "
            "profile, in no session summary), by route. Late redirected events mean identity lags the "
            "events by more than a session gap (a backlog).",
            [
                Query(_rate("persona_profile_redirects_total", "cause"), "redirected {{cause}}"),
                Query(_rate("persona_session_late_events_total", "route"), "late {{route}}"),
            ],
            "cps",
        )
    )

    # --- cluster segments ------------------------------------------------------------------
    d = d.with_row(dash.Row("Cluster segments").id(ids()))
    d = d.with_panel(
        graph(
            ids,
            "Cluster silhouette and k",
            "Quality of the online cluster model, computed every 30 s on its reservoir sample: mean "
            "silhouette (-1..1; below 0.1 the clusters barely separate) and the number of clusters "
            "(0 while the model warms up).",
            [
                Query(f"max(persona_cluster_silhouette{{{SEL}}})", "silhouette"),
                Query(f"max(persona_cluster_k{{{SEL}}})", "k"),
            ],
            "short",
            min_zero=False,
        )
    )
    d = d.with_panel(
        graph(
            ids,
            "Cluster sample share by segment",
            "Share of the model's reservoir sample nearest to each cluster segment. A share near 0 "
            "is a stranded centre; one near 1 means the clusters collapsed.",
            [Query(f"max by (segment) (persona_cluster_sample_share{{{SEL}}})", "{{segment}}")],
            "percentunit",
        )
    )
    d = d.with_panel(
        graph(
            ids,
            "Cluster centre drift",
            "How far the centres moved between two quality checks (standardised units), mean and "
            "max over the clusters: steady drift follows behaviour; a jump is a re-seeding or a shift.",
            [Query(f"max by (stat) (persona_cluster_centre_drift{{{SEL}}})", "{{stat}}")],
            "short",
        )
    )
    d = d.with_panel(
        graph(
            ids,
            "Cluster inputs/s by outcome",
            "Profile vectors (one per closed session) read by the clusters stage per second: assigned, "
            "duplicate (a session sent again after a replay upstream), replayed (offset already applied); "
            "identity merges: merged.",
            [Query(_rate("persona_cluster_inputs_total", "outcome"), "{{outcome}}")],
            "cps",
        )
    )

    # --- latency ---------------------------------------------------------------------------
    d = d.with_row(dash.Row("Latency").id(ids()))
    d = d.with_panel(
        graph(
            ids,
            "Stage latency p50 / p99",
            "Time one record spends in each pipeline stage, 50th and 99th percentile. "
            "Buckets end at 100 ms: a flat line there means at least 100 ms.",
            [
                Query(_quantile(0.5, "persona_stage_seconds", "stage"), "p50 {{stage}}"),
                Query(_quantile(0.99, "persona_stage_seconds", "stage"), "p99 {{stage}}"),
            ],
            "s",
        )
    )
    d = d.with_panel(
        graph(
            ids,
            "End-to-end latency p50 / p99",
            "From a clickstream record's Kafka timestamp (when the publisher produced it) to the "
            "profiles stage having applied its event (state written, session summaries and segment "
            "changes sent, Redis queued). Buckets end at 60 s: a flat line there means at least 60 s.",
            [
                Query(_quantile(0.5, "persona_end_to_end_seconds"), "p50"),
                Query(_quantile(0.99, "persona_end_to_end_seconds"), "p99"),
            ],
            "s",
        )
    )
    d = d.with_panel(
        graph(
            ids,
            "Event lag p99 by topic",
            "Age of a record when the worker applied it (now minus its Kafka timestamp), 99th "
            "percentile by topic. Buckets end at 60 s: a flat line there means at least 60 s.",
            [Query(_quantile(0.99, "persona_event_lag_seconds", "topic"), "p99 {{topic}}")],
            "s",
            thresholds=_thresholds((None, GREEN), (5, ORANGE), (30, RED)),
        )
    )

    # --- state and serving -----------------------------------------------------------------
    d = d.with_row(dash.Row("State and Redis serving").id(ids()))
    d = d.with_panel(
        graph(
            ids,
            "Table keys",
            "Keys held per table, summed over the selected workers (each worker counts its "
            "active partitions only, so the sum is the table size).",
            [Query(f"sum by (table) (persona_table_keys{{{SEL}}})", "{{table}}")],
            "short",
        )
    )
    d = d.with_panel(
        graph(
            ids,
            "Redis writes / errors / skipped",
            "Keys written to Redis per second; failed flushes per second (retried); changed "
            "keys dropped per second because the pending buffer was full.",
            [
                Query(_rate("persona_redis_writes_total"), "written keys"),
                Query(_rate("persona_redis_errors_total"), "failed flushes"),
                Query(_rate("persona_redis_skipped_total"), "skipped keys"),
                Query(_rate("persona_redis_rebuild_keys_total"), "re-served keys"),
            ],
            "cps",
            colors=[("written keys", GREEN), ("failed flushes", RED), ("skipped keys", ORANGE),
                    ("re-served keys", BLUE)],
        )
    )
    d = d.with_panel(
        graph(
            ids,
            "Redis pending keys per worker",
            "Changed keys waiting to be written to Redis, per worker. Near zero when healthy.",
            [Query(f"sum by (instance) (persona_redis_pending_keys{{{SEL}}})", "{{instance}}")],
            "short",
            thresholds=_thresholds((None, GREEN), (10000, ORANGE), (50000, RED)),
        )
    )
    d = d.with_panel(
        graph(
            ids,
            "Redis lag",
            "Table-to-Redis lag per worker: how long the oldest change not yet written to Redis has "
            "waited. Under a second when healthy; grows while Redis is down or the flusher is stuck "
            "(alert PersonaRedisLagging at 30 s for 2 min).",
            [Query(f"max by (instance) (persona_redis_lag_seconds{{{SEL}}})", "{{instance}}")],
            "s",
            thresholds=_thresholds((None, GREEN), (5, ORANGE), (30, RED)),
        )
    )
    d = d.with_panel(
        graph(
            ids,
            "Redis self-heal",
            "Table partitions each worker still has to re-serve to Redis from its tables (0 when "
            "Redis is whole), and the re-serves started, by reason: data_lost (Redis lost its data), "
            "assigned (partitions taken at start or a rebalance), skipped (changes dropped while "
            "Redis was down).",
            [
                Query(f"sum by (instance) (persona_redis_rebuild_partitions_queued{{{SEL}}})",
                      "queued {{instance}}"),
                Query(f"sum by (reason) (increase(persona_redis_rebuilds_total{{{SEL}}}[{RATE}]))",
                      "started {{reason}}"),
            ],
            "short",
        )
    )
    d = d.with_panel(
        graph(
            ids,
            "Recovery rewinds",
            "Source partitions rewound at recovery because the committed offset was ahead of "
            "the restored state, by topic; and input gaps: a batch that skipped offsets its state "
            "expected, sought back (Faust hands over records from before its seek after a "
            "recovery). Both expected only around restarts.",
            [
                Query(
                    f"sum by (topic) (increase(persona_recovery_rewinds_total{{{SEL}}}[{RATE}]))",
                    "rewinds {{topic}}",
                ),
                Query(
                    f"sum by (topic) (increase(persona_input_gaps_total{{{SEL}}}[{RATE}]))",
                    "gaps {{topic}}",
                ),
            ],
            "short",
            bars=True,
        )
    )

    # --- process ---------------------------------------------------------------------------
    d = d.with_row(dash.Row("Worker processes").id(ids()))
    d = d.with_panel(
        graph(
            ids,
            "Resident memory",
            "Resident set size of each worker process (prometheus_client process metrics).",
            [Query(f"process_resident_memory_bytes{{{SEL}}}", "{{instance}}")],
            "bytes",
            w=8,
        )
    )
    d = d.with_panel(
        graph(
            ids,
            "CPU",
            "CPU time used per second by each worker process; 100% is one full core.",
            [Query(f"rate(process_cpu_seconds_total{{{SEL}}}[{RATE}])", "{{instance}}")],
            "percentunit",
            w=8,
        )
    )
    d = d.with_panel(
        graph(
            ids,
            "Open file descriptors",
            "Open file descriptors of each worker process (sockets to Kafka and Redis, files).",
            [Query(f"process_open_fds{{{SEL}}}", "{{instance}}")],
            "short",
            w=8,
        )
    )
    return d


# file name -> builder of each generated dashboard
BUILDERS = {"persona-overview.json": overview}


def render(name: str) -> str:
    """The JSON text of dashboard ``name`` as committed."""
    model = BUILDERS[name]().build()
    data: dict[str, Any] = json.loads(json.dumps(model, cls=JSONEncoder))
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate grafana/dashboards/*.json")
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for name in BUILDERS:
        path = DASHBOARDS / name
        text = render(name)
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(name)
        if not args.check:
            DASHBOARDS.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote grafana/dashboards/{name}")
    if args.check and stale:
        print("out of date: " + ", ".join(stale) + " (run: python grafana/build_dashboards.py)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
