"""``vaereg report`` over the Optuna studies ``vaereg search`` keeps beside the results store: a
section per study with its history, its parameter importances (or a note why there are none) and
its trials' table, the best trial marked in the study's direction; the studies file is never
changed, a damaged one is a note, and without one the report is exactly what it was."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from vaereg_harness.store.report import render_html, render_markdown, sections, write_report
from vaereg_harness.store.results import Row, append_row, read_results
from vaereg_harness.store.studies import studies_file

SPACE = {"lr": FloatDistribution(1e-4, 1e-1, log=True), "set.encoder.latent_dim": IntDistribution(2, 32)}
# (state, value, lr, latent_dim, intermediate values by epoch): the varying study's trials in order
TRIALS = [(TrialState.COMPLETE, 3.0, 1e-3, 8, {1: 3.4, 2: 3.1}),
          (TrialState.COMPLETE, 1.5, 3e-3, 16, {1: 2.0, 2: 1.6}),
          (TrialState.PRUNED, None, 5e-2, 4, {1: 9.0, 2: 8.5}),
          (TrialState.COMPLETE, 2.0, 1e-2, 4, {}),
          (TrialState.FAIL, None, 2e-4, 32, {})]


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """One intra-op thread: fANOVA's forest and matplotlib only."""


def key(study: str, number: int) -> str:
    return f"{study}-{number}"


def add_trials(study: optuna.Study, trials) -> None:
    """``trials`` into ``study``, each with the run key and run folder ``vaereg search`` records."""
    for number, (state, value, lr, width, reported) in enumerate(trials):
        study.add_trial(create_trial(
            state=state, value=value, params={"lr": lr, "set.encoder.latent_dim": width}, distributions=SPACE,
            intermediate_values=reported,
            user_attrs={"run_key": key(study.study_name, number), "run_dir": f"runs/{study.study_name}-{number}"}))


def make_studies(db: Path) -> None:
    """Three studies in one file: ``varying`` (minimize; complete, pruned and failed trials),
    ``upward`` (maximize; the same values and parameters) and ``constant`` (maximize; two complete
    trials with one parameter set)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{db}"
    for name, direction, trials in (("varying", "minimize", TRIALS), ("upward", "maximize", TRIALS),
                                    ("constant", "maximize", [(TrialState.COMPLETE, 1.0, 1e-3, 8, {}),
                                                              (TrialState.COMPLETE, 2.0, 1e-3, 8, {})])):
        study = optuna.create_study(study_name=name, storage=storage, direction=direction)
        study.set_user_attr("metric", "nll_nats")
        add_trials(study, trials)


def store_row(study: str, number: int, value: float) -> Row:
    return Row(run_id=key(study, number), created_at=datetime.now(UTC), combo="gaussian", parts="{}", config="{}",
               run_dir=f"runs/{study}-{number}", config_hash=key(study, number), dataset="digits", seed=number,
               device="cpu", epochs=1, status="ok", vaereg_version="0", torch_version="0",
               scores={"nll_nats": value, "fid": 10.0 + number, "fid_extractor": "inception"})


@pytest.fixture
def results(tmp_path) -> Path:
    """A results store whose rows are the varying study's complete trials' (the others have none)."""
    store = tmp_path / "vaereg-results"
    for number, (state, value, *_) in enumerate(TRIALS):
        if state == TrialState.COMPLETE:
            append_row(store, store_row("varying", number, value))
    return store


def unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def study_tables(markdown: str) -> dict[str, tuple[str, list[dict[str, str]]]]:
    """Each ``## Study NAME`` section of the Markdown: its text and its table as heading -> cell dicts."""
    found = {}
    for chunk in re.split(r"^## Study ", markdown, flags=re.M)[1:]:
        name, _, body = chunk.partition("\n")
        lines = [line for line in body.splitlines() if line.startswith("| ")]
        cells = [[unescape(c.strip()) for c in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines]
        found[unescape(name)] = (unescape(body), [dict(zip(cells[0], row, strict=True)) for row in cells[1:]])
    return found


def test_each_study_has_its_section_with_the_best_trial_in_its_direction_and_its_figures(results, tmp_path):
    db = tmp_path / "vaereg-results-studies.db"
    assert studies_file(results) == db  # where vaereg search keeps them (test_search reads them there)
    make_studies(db)
    before = db.read_bytes()
    _, twin = write_report(results, tmp_path / "rep")
    markdown = twin.read_text(encoding="utf-8")
    tables = study_tables(markdown)
    assert sorted(tables) == ["constant", "upward", "varying"]

    body, rows = tables["varying"]
    assert [r["state"] for r in rows] == ["complete", "complete", "pruned", "complete", "fail"]
    assert [r["best"] for r in rows] == ["", "best", "", "", ""]  # 1.5 is the least value
    assert [r["nll_nats"] for r in rows] == ["3", "1.5", "", "2", ""]
    assert [r["lr"] for r in rows] == ["0.001", "0.003", "0.05", "0.01", "0.0002"]
    assert [r["set.encoder.latent_dim"] for r in rows] == ["8", "16", "4", "4", "32"]
    assert rows[2]["last reported (epoch)"] == "8.5 (2)"  # where the pruned trial stopped
    folders = {r["run_id"]: r["run_dir"] for r in read_results(results).to_pylist()}
    assert [r["run folder"] for r in rows] == [folders["varying-0"], folders["varying-1"], "", folders["varying-3"], ""]
    assert "minimize nll_nats; 5 trials: 3 complete, 1 pruned, 1 fail" in body

    _, upward = tables["upward"]
    assert [r["best"] for r in upward] == ["best", "", "", "", ""]  # maximize: 3.0 is best
    assert all(r["run folder"] == "" for r in upward)  # no rows carry its run keys

    figures = dict(re.findall(r"!\[([^]]*)\]\((figures/[^)]+)\)", body))
    history = [path for caption, path in figures.items() if "best so far" in caption]
    [importance] = [(caption, path) for caption, path in figures.items() if "importances" in caption]
    assert len(history) == 1 and (tmp_path / "rep" / history[0]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "rep" / importance[1]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the caption's importances are fANOVA's for the same trials, read independently from the file
    study = optuna.load_study(study_name="varying", storage=f"sqlite:///{db}")
    expected = optuna.importance.get_param_importances(
        study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    listed = dict(re.findall(r"(\S+) (\d\.\d{3})", unescape(importance[0]).split(": ", 1)[1]))
    assert listed == {name: f"{value:.3f}" for name, value in expected.items()} and len(listed) == 2

    body, _ = tables["constant"]
    assert "no parameter importances: no parameter varies among the complete trials" in body
    assert not any("importances" in caption for caption in re.findall(r"!\[([^]]*)\]", body))
    assert db.read_bytes() == before  # read, never written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep", "vaereg-results", "vaereg-results-studies.db"]

    page = (tmp_path / "rep" / "index.html").read_text(encoding="utf-8")
    assert page.count("<h2>Study ") == 3 and page.count("<td data-v='best'>best</td>") == 3


def test_one_complete_trial_gets_a_note_instead_of_importances(results, tmp_path):
    study = optuna.create_study(study_name="short", storage=f"sqlite:///{tmp_path / 'vaereg-results-studies.db'}")
    add_trials(study, TRIALS[:1] + TRIALS[2:3])
    _, twin = write_report(results, tmp_path / "rep")
    body, rows = study_tables(twin.read_text(encoding="utf-8"))["short"]
    assert "no parameter importances: 1 complete trial (they need 2" in body
    assert [r["best"] for r in rows] == ["best", ""] and "value" in rows[0]  # no metric recorded: "value"
    assert len(list((tmp_path / "rep" / "figures").glob("study-*"))) == 1  # the history only


def test_without_a_studies_file_the_report_is_what_it_was(results, tmp_path):
    page, twin = write_report(results, tmp_path / "rep")
    rows = read_results(results).to_pylist()
    parts = sections(rows, tmp_path / "again" / "figures")  # the report as drawn before studies were read
    assert twin.read_text(encoding="utf-8") == render_markdown("vaereg report", parts, tmp_path / "again")
    assert page.read_text(encoding="utf-8") == render_html("vaereg report", parts)
    assert not list((tmp_path / "rep" / "figures").glob("study-*")) and "Study" not in twin.read_text()


def expect_only_a_note(results: Path, out: Path, says: str) -> None:
    """The report is the one without studies, and one note after it containing ``says``."""
    _, twin = write_report(results, out)
    markdown = twin.read_text(encoding="utf-8")
    plain = render_markdown("vaereg report", sections(read_results(results).to_pylist(), out / "figures"), out)
    assert markdown.startswith(plain.removesuffix("\n")) and "Study" not in markdown
    note = markdown.removeprefix(plain.removesuffix("\n")).strip()
    assert "\n" not in note and says in unescape(note) and "Traceback" not in note, note


def test_a_damaged_studies_file_is_one_note_and_is_left_as_it_was(results, tmp_path):
    db = tmp_path / "vaereg-results-studies.db"
    db.write_bytes(b"not a database\n" * 100)
    expect_only_a_note(results, tmp_path / "rep", f"{db}: not readable as Optuna studies (file is not a database)")
    assert db.read_bytes() == b"not a database\n" * 100


def test_an_empty_studies_file_is_a_note_and_stays_empty(results, tmp_path):
    db = tmp_path / "vaereg-results-studies.db"
    db.touch()
    expect_only_a_note(results, tmp_path / "rep", f"{db}: holds no Optuna study")
    assert db.read_bytes() == b""


def test_without_optuna_the_studies_are_a_note(results, tmp_path, monkeypatch):
    make_studies(tmp_path / "vaereg-results-studies.db")
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna raises ImportError
    expect_only_a_note(results, tmp_path / "rep", "Optuna studies are not shown without Optuna")
