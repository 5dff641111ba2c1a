"""A population's lineage, for people: who copied whom at each interval, where the best came from, and the
hyperparameter schedule it trained with.

    python -m orchestrator report runs/pbt      # lineage.png and schedule.png, and the tables below

Read from the decisions the driver wrote (`population/epoch_<E>.json`, the same files the members acted on)
and from history.parquet's `pbt.*` columns (each epoch's generation, parent and knob values). No Ray here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from orchestrator.location import Location
from orchestrator.review.plots import pyplot, save_figure
from orchestrator.review.summaries import markdown_table
from trainables.exploit import DECISIONS, PREFIX

Decisions = dict[int, dict[int, dict[str, Any]]]  # interval epoch -> member -> its exploit


def member_of(name: str) -> int:
    """Trial names end in Tune's number (`..._00003`): the member's index."""
    return int(str(name).rsplit("_", 1)[-1])


def read_decisions(location: Location) -> Decisions:
    decisions: Decisions = {}
    for info in location.children(DECISIONS):
        if info.base_name.startswith("epoch_") and info.base_name.endswith(".json"):
            data = location.read_json(DECISIONS, info.base_name)
            decisions[int(data["epoch"])] = {int(k): v for k, v in data["exploits"].items()}
    return dict(sorted(decisions.items()))


def ancestry(decisions: Decisions, member: int, epoch: int) -> list[tuple[int, int, int]]:
    """Whose training a member's weights at `epoch` went through: (first epoch, last epoch, member) spans,
    earliest first. A copy at E means epochs up to E were the parent's."""
    spans: list[tuple[int, int, int]] = []
    end = epoch
    for at in sorted((e for e in decisions if e < epoch), reverse=True):
        if member in decisions[at]:
            spans.append((at + 1, end, member))
            member, end = int(decisions[at][member]["parent"]), at
    spans.append((1, end, member))
    return spans[::-1]


def lineage_markdown(decisions: Decisions, names: dict[int, str], best: str | None, best_epoch: int | None) -> str:
    if not decisions:
        return "No exploit yet: the population copies at its first interval epoch."
    epochs = list(decisions)
    body = [
        [f"{i} `{names.get(i, '')}`", *[f"<- {decisions[e][i]['parent']}" if i in decisions[e] else "" for e in epochs]]
        for i in sorted(names)
    ]
    table = markdown_table(["member", *[f"epoch {e}" for e in epochs]], body)
    text = (
        "Each row is a member; `<- p` at an epoch: it copied member p there (weights, optimizer state, schedule "
        "position) and went on with mutated knobs.\n\n" + table
    )
    if best is not None and best_epoch is not None:
        spans = ancestry(decisions, member_of(best), best_epoch)
        path = ", then ".join(f"member {m} (epochs {a}-{b})" for a, b, m in spans)
        text += f"\n\nWhere the best came from (`{best}`, epoch {best_epoch}): {path}."
    return text


def schedule_rows(history: pd.DataFrame, decisions: Decisions, best: str, best_epoch: int) -> pd.DataFrame:
    """The best checkpoint's own hyperparameter schedule: each epoch's row from the member that trained it."""
    members = history["trial_name"].map(member_of)
    rows = [
        history[(members == m) & history["epoch"].between(a, b)]
        for a, b, m in ancestry(decisions, member_of(best), best_epoch)
    ]
    frame = pd.concat(rows) if rows else history.iloc[0:0]
    return frame.sort_values("epoch")


def knob_columns(history: pd.DataFrame) -> list[str]:
    return [c for c in history.columns if c.startswith(PREFIX) and c not in (f"{PREFIX}generation", f"{PREFIX}parent")]


def schedule_markdown(frame: pd.DataFrame) -> str:
    knobs = knob_columns(frame)
    body = [[str(int(r["epoch"])), str(member_of(r["trial_name"])), f"{r['lr']:.3g}",
             *[f"{r[k]:.4g}" if isinstance(r[k], float) else str(r[k]) for k in knobs], f"{r['val_accuracy']:.4f}"]
            for _, r in frame.iterrows()]  # fmt: skip
    header = ["epoch", "trained by member", "lr used", *[k.removeprefix(PREFIX) for k in knobs], "val acc"]
    return markdown_table(header, body)


def plot_lineage(decisions: Decisions, names: dict[int, str], epochs: int, spans: list[tuple[int, int, int]],
                 path: Path) -> None:  # fmt: skip
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(names) + 1.5))
    for member in names:
        ax.plot([0, epochs], [member, member], color="lightgray", linewidth=1, zorder=1)
    for epoch, exploits in decisions.items():
        for child, exploit in exploits.items():
            ax.annotate("", xy=(epoch, child), xytext=(epoch, int(exploit["parent"])),
                        arrowprops={"arrowstyle": "->", "color": "tab:blue"})  # fmt: skip
    for a, b, member in spans:
        ax.plot([a - 1, b], [member, member], color="tab:red", linewidth=3, zorder=2)
    for (_, b, m), (a, _, n) in zip(spans, spans[1:], strict=False):
        ax.plot([b, a - 1], [m, n], color="tab:red", linewidth=3, zorder=2)
    ax.set_yticks(sorted(names))
    ax.set_xticks(range(epochs + 1))
    ax.set_xlabel("epoch")
    ax.set_ylabel("member")
    ax.set_title("Who copied whom (arrows: parent -> copy); red: the best checkpoint's line")
    save_figure(fig, path)


def plot_schedule(frame: pd.DataFrame, path: Path) -> None:
    plt = pyplot()
    knobs = ["lr", *knob_columns(frame)]
    fig, axes = plt.subplots(len(knobs), 1, figsize=(6, 1.8 * len(knobs)), sharex=True, squeeze=False)
    for ax, knob in zip(axes[:, 0], knobs, strict=True):
        ax.step(frame["epoch"], frame[knob], where="mid", marker="o")
        # `lr` is the rate the optimizer used (a schedule moves it); `pbt.lr` is the knob the member was given.
        ax.set_ylabel("lr used" if knob == "lr" else f"{knob.removeprefix(PREFIX)} (knob)")
        if knob.endswith("lr") and (frame[knob] > 0).all():
            ax.set_yscale("log")
    axes[-1, 0].set_xlabel("epoch")
    fig.suptitle("The best checkpoint's hyperparameter schedule")
    save_figure(fig, path)


def lineage_sections(location: Location, history: pd.DataFrame, manifest: dict[str, Any] | None, epochs: int,
                     out: Path) -> list[str]:  # fmt: skip
    """The report's population sections (empty for a sweep that is not a population)."""
    decisions = read_decisions(location)
    if not decisions and f"{PREFIX}generation" not in history.columns:
        return []
    names = {member_of(n): str(n) for n in history["trial_name"].unique()}
    best = manifest["trial_name"] if manifest else None
    best_epoch = int(manifest["epoch"]) if manifest else None
    spans = ancestry(decisions, member_of(best), best_epoch) if best and best_epoch else []
    plot_lineage(decisions, names, epochs, spans, out / "lineage.png")
    sections = [
        "## Population lineage",
        lineage_markdown(decisions, names, best, best_epoch),
        "![lineage](lineage.png)",
    ]
    if best and best_epoch:
        frame = schedule_rows(history, decisions, best, best_epoch)
        plot_schedule(frame, out / "schedule.png")
        sections += ["## The best checkpoint's hyperparameter schedule", schedule_markdown(frame),
                     "![schedule](schedule.png)"]  # fmt: skip
    return sections
