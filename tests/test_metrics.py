"""Metrics are a plugin kind: the built-in metrics reduce one evaluation pass and one draw of
samples into today's columns, a third-party metric package (pip-installed, with its own entry
point) adds its columns to the row, the store, `vaereg results` and the report, and bad names
or values are one line."""

import json
import math
import subprocess
import types
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F

from tests.conftest import env_with, installed, vaereg_cli
from vaereg import Column, Metric, UsageError, VaeregError, hookimpl
from vaereg import registry as registry_module
from vaereg.combo import resolve
from vaereg.metrics import EvaluationPass, Scoring, checked_values
from vaereg.registry import PluginLoadWarning, build_registry, load_registry
from vaereg_harness.api import RunConfig, create_model
from vaereg_harness.metrics import DEFAULTS
from vaereg_harness.metrics import run as metrics_run
from vaereg_harness.metrics.fid import FIDProtocol, protocol_for
from vaereg_harness.metrics.passes import evaluation_pass
from vaereg_harness.metrics.run import build_metrics, score_run
from vaereg_harness.run import checkpoint
from vaereg_harness.run.config import TrainConfig
from vaereg_harness.run.trainer import StageReport
from vaereg_harness.store.results import Row, append_row, read_results, refused_metrics, schema

# the columns of a row before metrics were plugins (schema 4), which the defaults must keep
TODAY = ["run_id", "created_at", "combo", "parts", "config", "run_dir", "config_hash", "dataset", "seed", "device",
         "threads", "world_size", "batch_size", "epochs", "condition", "eval_images", "nelbo_nats", "nll_nats",
         "nll_bpd", "iw_samples", "nll_note", "train_seconds", "train_images_per_s", "stage_seconds", "eval_seconds",
         "sample_images_per_s", "peak_gpu_memory_mb", "codebook_perplexity", "codebook_usage", "kl_per_level",
         "active_units", "fid", "fid_extractor", "fid_samples", "fid_reference", "fid_floor", "fid_note",
         "fid_extractor_accuracy", "fid_extractor_seconds", "fid_seconds", "condition_accuracy", "samples_png",
         "samples_mean_png", "reconstructions_png", "traversals_png", "interpolations_png", "factor_mi_png", "status",
         "vaereg_version", "torch_version",
         # issue 24: representation and sample quality by default, disentanglement on request
         "rate", "distortion", "active_units_rule", "kid", "kid_std", "kid_subset_size", "kid_note", "precision",
         "recall", "prc_f_score", "prc_neighbourhood", "prc_note", "classifier_score", "classifier_score_note",
         "mutual_information", "mutual_information_se", "mig", "sap", "dci_disentanglement", "dci_completeness",
         "dci_informativeness", "betavae", "factorvae"]
SHORT_RUN = ("--combo", "gaussian", "--epochs", "1", "--no-fid", "--iw-samples", "2", "--quiet")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """The toy metric package pip-installed into a fresh folder, which this module's registry
    also reads; yields the environment a subprocess needs to see it."""
    with installed(tmp_path_factory.mktemp("site"), "vaereg_toymetric") as target:
        yield env_with(target)


def errors(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("Error:")]


def rebuilt(row: dict):
    path = Path(row["run_dir"]) / "checkpoint.pt"
    return checkpoint.rebuild(checkpoint.load(path), path).eval()


def test_the_default_row_has_todays_columns_and_values_that_reduce_the_one_pass(tmp_path, digits):
    vaereg_cli("eval", *SHORT_RUN, "--eval-images", "120", "--out", str(tmp_path / "runs"), cwd=tmp_path)
    (written,) = (tmp_path / "vaereg-results").glob("*.parquet")
    assert sorted(pq.read_schema(written).names) == sorted(TODAY)
    (row,) = read_results(tmp_path / "vaereg-results").to_pylist()
    assert json.loads(row["config"])["metrics"] == list(DEFAULTS)
    # the same pass, run again here from the checkpoint with the run's seed
    scored = digits.test_subset(120)
    again = evaluation_pass(rebuilt(row), scored, 2, 128, progress=False, seed=0)
    assert row["nll_nats"] == pytest.approx(again.nll.mean().item(), rel=1e-6)
    assert row["nelbo_nats"] == pytest.approx(again.nelbo.mean().item(), rel=1e-6)
    assert row["nll_bpd"] == pytest.approx(again.nll.mean().item() / (64 * math.log(2)), rel=1e-6)
    assert row["iw_samples"] == 2 and row["eval_images"] == 120
    assert json.loads(row["kl_per_level"]) == pytest.approx([again.kl.sum().item()], rel=1e-6)
    assert row["active_units"] == int((again.kl > 0.01).sum())
    assert row["codebook_usage"] is None and row["condition_accuracy"] is None and row["fid"] is None
    assert row["train_seconds"] > 0 and row["sample_images_per_s"] > 0 and json.loads(row["stage_seconds"])


def test_the_metrics_share_one_encoding_per_batch_and_one_draw_of_samples(digits, _cache, monkeypatch):
    labelled = digits.conditioned("label")
    config = RunConfig(train=TrainConfig(epochs=1, device="cpu", threads=1), iw_samples=300, iw_chunk=128,
                       fid_samples=100, eval_images=40)
    model = create_model("gaussian", labelled, config=config).eval()
    protocol = protocol_for(labelled, _cache)
    assert isinstance(protocol, FIDProtocol)
    encodes, draws = [], []
    model.encoder.register_forward_hook(lambda *_: encodes.append(1))
    real_draw = metrics_run.draw_samples
    monkeypatch.setattr(metrics_run, "draw_samples", lambda *a, **k: draws.append(a[2]) or real_draw(*a, **k))
    scored = labelled.test_subset(40)
    metrics = build_metrics(config.metrics, labelled, model.combo)
    values = score_run(model, metrics, labelled, scored, config, reports=[StageReport("autoencoder", 2.0, 500)],
                       fid=protocol, progress=False)
    assert len(encodes) == 5  # 40 images, 8 per pass on a CPU with 128 draws a chunk: each encoded once
    assert draws == [100]  # FID and class accuracy want 100 samples, the timing 64: one draw of 100
    images, labels = real_draw(model, labelled, 100, seed=0)
    assert values["fid"] == pytest.approx(protocol.score(images), rel=1e-9)
    assert values["condition_accuracy"] == protocol.label_accuracy(images, labels)
    assert values["fid_samples"] == 100 and values["fid_floor"] == protocol.floor
    assert values["train_images_per_s"] == 250 and values["iw_samples"] == 300
    assert values["nll_nats"] == evaluation_pass(model, scored, 300, 128, progress=False, seed=0).nll_nats
    left_out = {"codebook_perplexity", "codebook_usage"}  # a Gaussian latent has no codes
    expected = {c.name for name in DEFAULTS for c in registry_module.get_registry().get("metric", name).cls.columns}
    notes = {"fid_note", "nll_note", "kid_note", "prc_note", "classifier_score_note"}
    assert set(values) == expected - left_out - notes  # notes say why a value is null


def test_a_metric_value_is_checked_against_its_declared_column():
    class Score(Metric):
        columns = (Column("score", float), Column("count", int))

        def compute(self, scoring):
            return {}

    metric = Score(None)
    assert checked_values("score", metric, {"score": 2, "count": 3}) == {"score": 2.0, "count": 3}
    assert checked_values("score", metric, {"score": None}) == {"score": None}
    for values, words in (({"score": torch.tensor(1.0)}, "'score' column 'score' is declared float"),
                          ({"count": True}, "column 'count' is declared int"),
                          ({"other": 1.0}, "undeclared column 'other'"), ([1.0], "return a dict")):
        with pytest.raises(VaeregError, match=words) as caught:
            checked_values("score", metric, values)
        assert "\n" not in str(caught.value)


def test_samples_are_drawn_once_and_never_beyond_what_the_metrics_declared():
    calls = []

    def draw(n):
        calls.append(n)
        return torch.rand(n, 1, 2, 2), None

    empty = torch.zeros(0)
    scoring = Scoring(model=None, data=None, test=None, device=torch.device("cpu"), seed=0,
                      evaluation=EvaluationPass(empty, empty, 1, None, None, 0.0), draw=draw, sample_count=10)
    first, _ = scoring.samples(4)
    again, _ = scoring.samples(10)
    assert calls == [10] and torch.equal(first, again[:4]) and scoring.sample_seconds >= 0
    with pytest.raises(VaeregError, match="sample_count"):
        scoring.samples(11)


def test_a_metric_whose_column_is_taken_is_left_out_and_refused_by_name(monkeypatch, digits):
    class Twin(Metric):
        columns = (Column("twin_score", float), Column("fid", float))

        def compute(self, scoring):
            return {}

    module = types.ModuleType("vaereg_twin")
    module.VAEREG_PLUGIN_API = 3
    module.register_metrics = hookimpl(lambda register: register("twin", Twin))
    loaded = [(p.name, p.module, p.version) for p in load_registry().loaded]
    monkeypatch.setattr(registry_module, "_registry", build_registry([*loaded, ("twin", module, "1.0")]))
    with pytest.warns(PluginLoadWarning, match="'fid'"):  # a note each time the columns are read
        assert "metric 'fid' already declares" in refused_metrics()["twin"]
        assert "twin_score" not in schema().names and schema().names.count("fid") == 1
        with pytest.raises(UsageError, match="--metrics twin: .*rename the column"):
            build_metrics(("twin",), digits, resolve("gaussian", digits.spec))


def test_a_third_party_metric_writes_its_column_with_the_value_it_computes(toy, tmp_path, digits):
    proc = vaereg_cli("eval", *SHORT_RUN, "--metrics", "recon", "--out", str(tmp_path / "runs"), cwd=tmp_path,
                      env=toy)
    assert "recon MSE" in proc.stdout and "PSNR" in proc.stdout
    (row,) = read_results(tmp_path / "vaereg-results").to_pylist()
    assert json.loads(row["config"])["metrics"] == [*DEFAULTS, "recon"]
    model = rebuilt(row)
    with torch.no_grad():  # every test image at once, on another path than the plugin's batches
        x = digits.to_model(digits.test, train=False)
        mode = model.encoder(x, digits.context(None)).mean
        mean = model.likelihood.mean(model.decoder(mode, digits.context(None)), digits.context(None))
    mse = F.mse_loss(mean.double(), x.double()).item()
    assert row["recon_mse"] == pytest.approx(mse, rel=1e-6)
    assert row["recon_psnr"] == pytest.approx(-10 * math.log10(mse), rel=1e-6)
    assert row["factor_count"] is None and math.isfinite(row["nll_nats"])
    shown = vaereg_cli("results", cwd=tmp_path, env=toy).stdout
    assert "PSNR" in shown and f"{row['recon_psnr']:.2f}" in shown


def test_an_unknown_metric_or_one_that_cannot_score_the_data_exits_2_before_training(toy, tmp_path):
    for asked, words in (("recon,nosuch", "unknown metric 'nosuch'; known metrics: active-units"),
                         ("factor-count", "--metrics factor-count cannot score gaussian on digits: needs "
                                          "ground-truth factors")):
        proc = vaereg_cli("eval", *SHORT_RUN, "--metrics", asked, cwd=tmp_path, env=toy, check=False)
        assert proc.returncode == 2 and len(errors(proc)) == 1 and words in errors(proc)[0], proc.stderr
        assert "Traceback" not in proc.stderr and not (tmp_path / "vaereg-runs").exists()
    assert "recon" in errors(vaereg_cli("eval", *SHORT_RUN, "--metrics", "x", cwd=tmp_path, env=toy,
                                        check=False))[0]
    (tmp_path / "exp.toml").write_text('combo = "gaussian"\nmetrics = ["recon"]\n')
    printed = vaereg_cli("eval", "--config", "exp.toml", "--print-config", cwd=tmp_path, env=toy).stdout
    assert 'metrics = ["recon"]' in printed
    (tmp_path / "bad.toml").write_text('combo = "gaussian"\nmetrics = ["nosuch"]\n')
    proc = vaereg_cli("eval", "--config", "bad.toml", cwd=tmp_path, env=toy, check=False)
    assert proc.returncode == 2 and "unknown metric 'nosuch'" in errors(proc)[0]


def store_row(combo: str, **scores) -> Row:
    return Row(run_id=combo, created_at=datetime.now(UTC), combo=combo, parts="{}", config="{}", dataset="digits",
               seed=0, device="cpu", epochs=1, status="ok", vaereg_version="0", torch_version="0", scores=scores)


def test_results_sort_in_each_columns_direction_and_the_report_shows_plugin_columns(toy, tmp_path):
    from vaereg_harness.store.report import write_report

    store = tmp_path / "vaereg-results"
    append_row(store, store_row("a", nll_nats=3.0, train_images_per_s=10.0, recon_psnr=20.0))
    append_row(store, store_row("b", nll_nats=1.0, train_images_per_s=30.0))
    append_row(store, store_row("c", nll_nats=2.0, train_images_per_s=20.0, recon_psnr=25.0))

    def order(column: str) -> list[str]:
        lines = vaereg_cli("results", "--sort", column, cwd=tmp_path, env=toy).stdout.splitlines()
        return [line.split()[0] for line in lines[1:]]

    assert order("nll_nats") == ["b", "c", "a"]  # lower is better: ascending
    assert order("train_images_per_s") == ["b", "c", "a"]  # higher is better: descending
    assert order("recon_psnr") == ["c", "a", "b"]  # a plugin's score; no value last
    proc = vaereg_cli("results", "--sort", "nll", cwd=tmp_path, env=toy, check=False)
    assert proc.returncode == 2 and len(errors(proc)) == 1
    assert "sortable: nelbo_nats, nll_nats" in errors(proc)[0] and "recon_psnr" in errors(proc)[0]
    page, twin = write_report(store, tmp_path / "report")
    assert "<th>PSNR</th>" in page.read_text() and "| 25.00 |" in twin.read_text()


def test_metric_options_are_set_per_metric_and_recorded_in_the_row(tmp_path):
    vaereg_cli("eval", *SHORT_RUN, "--set", "metric.active-units.rule=variance", "--set",
               "metric.active-units.threshold=0.001", cwd=tmp_path)
    (row,) = read_results(tmp_path / "vaereg-results").to_pylist()
    assert row["active_units_rule"] == "variance>0.001"
    assert json.loads(row["config"])["metric_options"] == {"active-units": {"rule": "variance", "threshold": 0.001}}
    for bad, says in (("metric.mig.bins=3", "'mig' is not scored in this run; add --metrics mig"),
                      ("metric.active-units.rule=nope", 'rule="nope" is not a choice'),
                      ("metric.rule=variance", "give metric.NAME.OPTION=VALUE")):
        proc = vaereg_cli("eval", *SHORT_RUN, "--set", bad, cwd=tmp_path, check=False)
        assert proc.returncode == 2 and says in proc.stderr, proc.stderr
