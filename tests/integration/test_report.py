"""`python -m orchestrator report` on the shared smoke sweep: every figure, report.md and the self-contained
report.html, paths relative to the experiment, an unfinished experiment, and the refusals.

    python -m pytest tests/integration/test_report.py -x -q

The smoke experiment is shared read-only: reports go to tmp directories (`--out`), and the tests that need
a changed experiment (moved, unfinished, corrupt) work on copies of it.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import Sweep, cli
from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ALWAYS = (
    "learning_curves.png",
    "parallel.png",
    "knobs.png",
    "test_vs_val.png",
    "wall_time.png",
    "asha.png",
    "pareto.png",
)
FINISHED = (*ALWAYS, "importance.png", "confusion.png")  # a finished sweep of 4 trials draws all of them


@pytest.fixture(scope="module")
def rendered(smoke_experiment: Sweep, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "r"
    done = cli("report", str(smoke_experiment.experiment), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert f"report: {out / 'report.md'}" in done.stdout
    return out


@pytest.fixture(scope="module")
def results(smoke_experiment: Sweep) -> pd.DataFrame:
    return pd.read_parquet(smoke_experiment.experiment / "results.parquet")


def section(markdown: str, title: str) -> str:
    """The text under `## title`, up to the next section."""
    start = markdown.index(f"\n## {title}\n")
    end = markdown.find("\n## ", start + 1)
    return markdown[start : end if end != -1 else None]


def table(text: str) -> list[dict[str, str]]:
    """The first pipe table in `text`, as rows keyed by the header."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, [c.strip() for c in line.strip("|").split("|")], strict=True)) for line in lines[2:]]


def check_pngs(directory: Path, names: tuple[str, ...]) -> None:
    for name in names:
        data = (directory / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5000, name
        with Image.open(directory / name) as image:
            image.verify()
        with Image.open(directory / name) as image:
            width, height = image.size
            assert 500 <= width <= 4000 and 200 <= height <= 4000, (name, image.size)


def check_html(directory: Path, names: tuple[str, ...], *absent: str) -> str:
    """Every figure embedded byte for byte, nothing fetched from outside, no absolute path."""
    page = (directory / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(names)
    for name in names:
        assert base64.b64encode((directory / name).read_bytes()).decode() in page, name
    assert re.findall(r'src="(?!data:)', page) == [] and "<link" not in page
    for text in ("/tmp/", *absent):
        assert text not in page
    return page


def test_report_draws_every_figure_and_embeds_them_in_one_html_file(rendered: Path, smoke_experiment: Sweep) -> None:
    check_pngs(rendered, FINISHED)
    markdown = (rendered / "report.md").read_text()
    referenced = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert sorted(referenced) == sorted(FINISHED), "images referenced by file name, beside report.md"
    for absolute in ("/tmp/", str(rendered), str(smoke_experiment.experiment)):
        assert absolute not in markdown
    page = check_html(rendered, FINISHED, str(rendered), str(smoke_experiment.experiment))
    titles = re.findall(r"^## (.+)$", markdown, flags=re.MULTILINE)
    assert titles == re.findall(r"<h2>(.+?)</h2>", page), "the same sections in both files"


def test_best_checkpoint_is_shown_relative_to_the_experiment(rendered: Path, smoke_experiment: Sweep) -> None:
    manifest = json.loads((smoke_experiment.experiment / "best" / "manifest.json").read_text())
    best = dict(
        (row[""], row["best checkpoint"])
        for row in table(section((rendered / "report.md").read_text(), "Best checkpoint"))
    )
    assert best["checkpoint"] == f"`{manifest['source_checkpoint']}`"
    assert (smoke_experiment.experiment / manifest["source_checkpoint"]).is_dir()
    assert best["trial"] == f"`{manifest['trial_name']}`"


def test_importance_ranks_the_knobs_of_the_smoke_sweep(rendered: Path) -> None:
    # 4 ended trials, 2 searched knobs (model, lr): enough for PED-ANOVA. Both lr=3e-3 trials beat both
    # lr=1e-5 ones by far, whatever the model, so the learning rate is what sets the best trials apart.
    text = section((rendered / "report.md").read_text(), "Which knobs mattered")
    assert "PED-ANOVA" in text and "skipped" not in text
    rows = table(text)
    assert [row["knob"] for row in rows] == ["`lr`", "`model`"]
    assert sum(float(row["importance"]) for row in rows) == pytest.approx(1.0, abs=2e-3)
    assert float(rows[0]["importance"]) > 0.5


def test_per_class_accuracy_matches_evaluate(rendered: Path, smoke_experiment: Sweep) -> None:
    done = cli("evaluate", str(smoke_experiment.experiment / "best"), "--json")
    assert done.returncode == 0, done.stderr
    evaluated = json.loads(done.stdout)
    text = section((rendered / "report.md").read_text(), "The best model on the test split")
    assert f"Test accuracy {evaluated['test_accuracy']:.4f} on {evaluated['images']} test images." in text
    rows = table(text)
    assert [row["class"] for row in rows] == evaluated["classes"]
    assert {row["class"]: row["accuracy"] for row in rows} == {
        name: f"{value:.4f}" for name, value in evaluated["per_class_accuracy"].items()
    }
    matrix = evaluated["confusion"]
    assert [int(row["images"]) for row in rows] == [sum(line) for line in matrix]


def test_test_vs_validation_and_wall_time_come_from_results_parquet(rendered: Path, results: pd.DataFrame) -> None:
    markdown = (rendered / "report.md").read_text()
    rows = table(section(markdown, "Test vs validation accuracy of every trial"))
    expected = results.sort_values("best_test_accuracy", ascending=False, kind="stable")
    assert [row["trial"] for row in rows] == expected["trial_name"].tolist()
    for row, truth in zip(rows, expected.itertuples(), strict=True):
        assert row["status"] == truth.status
        assert row["best val acc"] == f"{truth.best_val_accuracy:.4f}"
        assert row["best test acc"] == f"{truth.best_test_accuracy:.4f}"
        assert row["test - val"] == f"{truth.best_test_accuracy - truth.best_val_accuracy:+.4f}"
    wall = section(markdown, "Wall time per trial")
    assert f"{len(results)} trials took {results['wall_seconds'].sum():.1f} s" in wall
    assert f"`{results.loc[results['wall_seconds'].idxmax(), 'trial_name']}`" in wall


def test_a_moved_experiment_reports_the_same(rendered: Path, smoke_experiment: Sweep, tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere" / "deeper" / smoke_experiment.experiment.name
    shutil.copytree(smoke_experiment.experiment, moved, ignore=shutil.ignore_patterns("report"))
    done = cli("report", str(moved), "--out", str(tmp_path / "r"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "r" / "report.md").read_text() == (rendered / "report.md").read_text()
    check_pngs(tmp_path / "r", FINISHED)
    check_html(tmp_path / "r", FINISHED, str(tmp_path), str(smoke_experiment.experiment))


def test_an_unfinished_experiment_renders_and_says_so(smoke_experiment: Sweep, tmp_path: Path) -> None:
    # What a killed sweep leaves: Ray's per-trial files, no tables, no best/, no recorded ending.
    live = tmp_path / "live"
    shutil.copytree(
        smoke_experiment.experiment, live, ignore=shutil.ignore_patterns("*.parquet", "best", "status.json", "report")
    )
    done = cli("report", str(live))
    assert done.returncode == 0, done.stderr
    assert "UNFINISHED" in done.stdout
    out = live / "report"
    markdown = (out / "report.md").read_text()
    assert "UNFINISHED" in markdown.splitlines()[2]
    assert "No best checkpoint yet" in section(markdown, "The best model on the test split")
    assert "Hyperparameter importance skipped: needs at least 4 ended trials" in markdown
    check_pngs(out, ALWAYS)
    assert not (out / "confusion.png").exists() and not (out / "importance.png").exists()
    check_html(out, ALWAYS, str(live))


@pytest.mark.parametrize("make", ["missing", "empty", "corrupt"])
def test_report_refuses_what_is_not_a_readable_experiment(make: str, smoke_experiment: Sweep, tmp_path: Path) -> None:
    target = tmp_path / "target"
    if make == "empty":
        target.mkdir()
    if make == "corrupt":  # status.json says finished, so the tables are read, and one is not Parquet
        shutil.copytree(smoke_experiment.experiment, target, ignore=shutil.ignore_patterns("report"))
        assert json.loads((target / "status.json").read_text())["state"] == "finished"
        (target / "results.parquet").write_bytes(b"not parquet at all")
    before = sorted(tmp_path.rglob("*"))
    done = cli("report", str(target))
    assert done.returncode == 2
    assert done.stdout == "" and len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith("data error: ")
    assert sorted(tmp_path.rglob("*")) == before, "nothing written"
