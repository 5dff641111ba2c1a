"""TensorBoard HParams records as summary protos: the experiment, a session's start, a session's end.

The HParams plugin reads three records per run: the session start (the trial's knobs, written by the
trial when it starts), the session end (its status, written once, by the driver, when the trial has
ended), and plain scalars whose value at the latest step is the metric (`trial/...`, written by the
driver at the trial's last step on every report, and when the trial pauses or ends; a later record at
the same step replaces the earlier one). TensorBoard keeps the *first* start and end record of a run
(their content is the tag's metadata), so an end is written only once the trial has really ended. A value
is never written at a step below one already written: TensorBoard would drop the later steps. No
TensorFlow: the protos come from TensorBoard's own packages.
"""

from __future__ import annotations

import json
import time
from typing import Any

from tensorboard.compat.proto import summary_pb2
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

from trainables import metrics as m
from trainables.metrics import finite

PREFIX = "trial/"  # sorts after the learning curves (accuracy, loss, lr) in SCALARS
STATUS = PREFIX + "status"
BEST_VAL = PREFIX + "best_val_accuracy"
BEST_TEST = PREFIX + "best_test_accuracy"
FINAL_VAL = PREFIX + "final_val_accuracy"
EPOCHS_RUN = PREFIX + "epochs_run"
STOPPED_EARLY = PREFIX + "stopped_early"
# What the model costs (trainables.costs): trial/params, trial/latency_ms, ...
COST_TAGS = {key: PREFIX + key for key in m.COSTS}

# Numeric status codes for the status metric (HParams metrics are numbers).
STATUS_CODES = {"running": 0, "completed": 1, "stopped": 2, "diverged": 3, "error": 4, "paused": 5}
STATUS_HELP = ", ".join(f"{code} {name}" for name, code in STATUS_CODES.items())

METRICS: dict[str, tuple[str, str]] = {  # tag -> (display name, description); the table's column order
    STATUS: ("status", f"trial status: {STATUS_HELP}"),
    BEST_VAL: ("best val accuracy", "highest validation accuracy over the epochs run"),
    BEST_TEST: ("best test accuracy", "highest test accuracy over the epochs run (the leaderboard's test_acc)"),
    EPOCHS_RUN: ("epochs run", "epochs the trial trained before it ended or was stopped"),
    STOPPED_EARLY: ("stopped early", "1 when early stopping cut the trial before trial.epochs"),
    FINAL_VAL: ("final val accuracy", "validation accuracy of the last epoch run"),
    **{
        PREFIX + f"best_{name}": (f"best {name.replace('_', ' ')}", f"highest {name} over the epochs run")
        for name in m.CLASS_BALANCED
    },
    COST_TAGS[m.PARAMS]: ("params", "the model's parameters"),
    COST_TAGS[m.CHECKPOINT_MB]: ("checkpoint MB", "the model's weights as saved, in MB (10^6 bytes)"),
    COST_TAGS[m.LATENCY_MS]: ("latency ms", "inference per sample at batch 1 on the trial's device (median)"),
    COST_TAGS[m.THROUGHPUT]: ("throughput", "inference samples per second at a large batch on the trial's device"),
    COST_TAGS[m.TRAIN_SECONDS]: ("train seconds", "time spent in the training loop, over every epoch run"),
}


def hparam_value(value: Any) -> bool | float | str:
    """HParams values are bool, number or string: lists (layer widths) become their JSON text."""
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        return float(value)
    return json.dumps(value)


def _summary(tag: str, data: plugin_data_pb2.HParamsPluginData) -> summary_pb2.Summary:
    value = summary_pb2.Summary.Value(
        tag=tag, metadata=metadata.create_summary_metadata(data), tensor=metadata.NULL_TENSOR
    )
    return summary_pb2.Summary(value=[value])


def session_start(knobs: dict[str, Any]) -> summary_pb2.Summary:
    info = plugin_data_pb2.SessionStartInfo(start_time_secs=time.time())
    for name, value in knobs.items():
        converted = hparam_value(value)
        if isinstance(converted, bool):
            info.hparams[name].bool_value = converted
        elif isinstance(converted, float):
            info.hparams[name].number_value = converted
        else:
            info.hparams[name].string_value = converted
    return _summary(metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_start_info=info))


def session_end(status: str) -> summary_pb2.Summary:
    """SUCCESS for trials that ran to their end or were stopped by ASHA; FAILURE for errors and NaNs."""
    code = api_pb2.STATUS_SUCCESS if status in ("completed", "stopped") else api_pb2.STATUS_FAILURE
    info = plugin_data_pb2.SessionEndInfo(status=code, end_time_secs=time.time())
    return _summary(metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=info))


def experiment(domains: dict[str, list[Any] | tuple[float, float]], description: str) -> summary_pb2.Summary:
    """The experiment record: which knobs are columns (with their domains) and which metrics."""
    infos = [_hparam_info(name, domain) for name, domain in domains.items()]
    metric_infos = [
        api_pb2.MetricInfo(
            name=api_pb2.MetricName(tag=tag),
            display_name=display,
            description=text,
            dataset_type=api_pb2.DATASET_VALIDATION if "val" in tag else api_pb2.DATASET_UNKNOWN,
        )
        for tag, (display, text) in METRICS.items()
    ]
    record = api_pb2.Experiment(
        description=description, hparam_infos=infos, metric_infos=metric_infos, time_created_secs=time.time()
    )
    return _summary(metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(experiment=record))


def _hparam_info(name: str, domain: list[Any] | tuple[float, float]) -> api_pb2.HParamInfo:
    """A list is a discrete domain; a (low, high) tuple an interval of a sampled range."""
    # `differs` marks the searched knobs: TensorBoard shows those columns first.
    info = api_pb2.HParamInfo(name=name, differs=isinstance(domain, tuple) or len(domain) > 1)
    if isinstance(domain, tuple):
        info.type = api_pb2.DATA_TYPE_FLOAT64
        info.domain_interval.min_value, info.domain_interval.max_value = domain
        return info
    values = [hparam_value(v) for v in domain]
    if all(isinstance(v, bool) for v in values):
        info.type = api_pb2.DATA_TYPE_BOOL
        info.domain_discrete.extend(values)
    elif all(isinstance(v, float) for v in values):
        info.type = api_pb2.DATA_TYPE_FLOAT64
        info.domain_discrete.extend(values)
    else:
        info.type = api_pb2.DATA_TYPE_STRING
        info.domain_discrete.extend(str(v) for v in values)
    return info


def metric_values(history: list[dict[str, Any]], status: str) -> dict[str, float]:
    """The HParams metric scalars from a trial's per-epoch rows (keys as in trainables.metrics)."""
    vals = [r[m.VAL_ACCURACY] for r in history if finite(r.get(m.VAL_ACCURACY))]
    tests = [r[m.TEST_ACCURACY] for r in history if finite(r.get(m.TEST_ACCURACY))]
    epochs = [int(r[m.EPOCH]) for r in history if finite(r.get(m.EPOCH))]
    values = {
        EPOCHS_RUN: float(max(epochs, default=0)),
        STOPPED_EARLY: float(status == "stopped"),
        STATUS: float(STATUS_CODES.get(status, 0)),
    }
    if vals:
        values.update({BEST_VAL: max(vals), FINAL_VAL: vals[-1]})
    if tests:
        values[BEST_TEST] = max(tests)
    for name in m.CLASS_BALANCED:
        scores = [r[name] for r in history if finite(r.get(name))]
        if scores:
            values[PREFIX + f"best_{name}"] = max(scores)
    last = history[-1] if history else {}
    values.update({tag: float(last[key]) for key, tag in COST_TAGS.items() if finite(last.get(key))})
    return values
