"""The report: grouping by seed, means and std, the paper's numbers beside ours, failures named."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from imgbench.errors import UserError
from imgbench.report import available, build_report, load
from imgbench.report.__main__ import main as report_main
from imgbench.report.references import matches, to_unit
from imgbench.report.table import Stat, verdict


def _job(root: Path, name: str, overrides: list[str], acc: float | None, status: str = "finished", **extra) -> Path:
    job = root / name
    (job / ".hydra").mkdir(parents=True)
    record = {
        "status": status,
        "overrides": overrides,
        "model": extra.pop("model", "keras_cnn"),
        "data": "mnist",
        "choices": extra.pop("choices", {}),
        "config": extra.pop("config", {}),
        **extra,
    }
    if acc is not None:
        record.update(
            metrics={"test/acc": acc, "val/acc_best": acc - 0.01},
            params=98442,
            train_seconds=10.0,
            train_images_per_sec=5000.0,
        )
    (job / "metrics.json").write_text(json.dumps(record))
    return job


def test_seeds_are_grouped_into_mean_std_and_n(tmp_path):
    accs = {("adam", 1): 0.90, ("adam", 2): 0.92, ("adam", 3): 0.97, ("sgd", 1): 0.80, ("sgd", 2): 0.84}
    for i, ((opt, seed), acc) in enumerate(accs.items()):
        _job(tmp_path, str(i), [f"optimizer={opt}", f"seed={seed}", "trainer.max_epochs=3"], acc)
    report = build_report(tmp_path)
    assert report.keys == ["optimizer"]  # seed is grouped, the constant epochs are not a column
    rows = {r["optimizer"]: r for r in report.rows()}
    adam = [0.90, 0.92, 0.97]
    assert rows["adam"]["test acc"] == f"{statistics.fmean(adam):.4f} ± {statistics.stdev(adam):.4f}"
    assert rows["adam"]["n"] == "3/3" and rows["sgd"]["n"] == "2/2"
    assert report.constants()["trainer.max_epochs"] == "3"
    md = report.markdown()
    assert "| optimizer | test acc |" in md and "98,442" in md
    csv_text = report.csv()
    assert csv_text.splitlines()[0].startswith("optimizer,test acc")
    assert len(csv_text.splitlines()) == 3


def test_failed_and_unfinished_jobs_are_named(tmp_path):
    _job(tmp_path, "0", ["optimizer.lr=0.1"], 0.9)
    _job(tmp_path, "1", ["optimizer.lr=-1"], None, status="failed", error="ConfigError: optimizer.lr must be > 0")
    (tmp_path / "2" / ".hydra").mkdir(parents=True)  # killed before it wrote anything
    report = build_report(tmp_path)
    assert [r.status for r in report.failures()] == ["failed", "unfinished"]
    md = report.markdown()
    assert "optimizer.lr must be > 0" in md and "killed or still running" in md
    assert "3 runs, 1 finished, 2 not." in md


def test_paper_values_beside_ours_with_units_and_not_run_cells(tmp_path):
    for seed, acc in ((1, 0.990), (2, 0.994)):
        _job(
            tmp_path,
            f"cnn{seed}",
            ["model=keras_cnn", f"seed={seed}"],
            acc,
            model="keras_cnn",
            config={"trainer.max_epochs": 10, "data.batch_size": 128, "data.val_size": 0},
            reference="study_e/mnist",
        )
    report = build_report(tmp_path)  # the runs name their reference table
    assert report.reference is not None and report.reference.name == "study_e/mnist"
    cells = {c["cell"]: c for c in report.comparison()}
    cnn = cells["CNN, MNIST"]
    assert cnn["paper"] == "0.9911" and cnn["n"] == "2"
    assert cnn["ours"] == "0.9920 ± 0.0028" and cnn["diff"] == "+0.0009"
    assert cnn["paper time s"] == "410" and cnn["our time s"] == "10"
    assert cells["FCN, MNIST"]["ours"] == "not run"
    assert "Paper: CNN versus fully convolutional network" in report.markdown()


def test_error_percent_tables_convert_our_accuracy(tmp_path):
    _job(tmp_path, "0", ["ablation=study_a/final", "data=mnist"], 0.9951, choices={"ablation": "study_a/final"},
         config={"data.val_size": 0})  # fmt: skip
    report = build_report(tmp_path, reference="study_a/ablation")
    cell = next(c for c in report.comparison() if c["cell"].endswith("(final), MNIST"))
    assert cell["paper"] == "0.50" and cell["ours"] == "0.49" and cell["diff"] == "-0.01"
    assert to_unit(0.9, "percent") == pytest.approx(90.0)


def test_every_reference_table_loads_with_settings():
    names = available()
    assert {
        "study_a/ablation",
        "study_a/bits",
        "study_c/ablation",
        "study_d/epochs",
        "study_e/mnist",
        "study_e/single_conv",
    } <= set(names)
    for name in names:
        table = load(name)
        assert table.cells and all(c.setting for c in table.cells)
        assert all("data" in c.setting or "data.name" in c.setting for c in table.cells), name  # never any dataset
    with pytest.raises(UserError, match="unknown reference table"):
        load("study_z/nothing")


def test_matching_uses_choices_record_fields_and_config(tmp_path):
    from imgbench.report.collect import find_runs

    _job(
        tmp_path,
        "0",
        [],
        0.9,
        choices={"scheduler": "exponential"},
        config={"model.activation": "selu", "trainer.max_epochs": 10},
    )
    (run,) = find_runs(tmp_path)
    assert matches(
        run, {"scheduler": "exponential", "model.activation": "selu", "trainer.max_epochs": 10.0, "model": "keras_cnn"}
    )
    assert not matches(run, {"model.activation": "relu"})
    assert not matches(run, {"model.hash_bits": 48})


def test_report_cli_writes_files_and_rejects_bad_dirs(tmp_path, capsys):
    _job(tmp_path, "0", ["optimizer=adam"], 0.9)
    _job(tmp_path, "1", ["optimizer=sgd"], 0.8)
    assert report_main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| adam |" in out and (tmp_path / "report.md").is_file() and (tmp_path / "report.csv").is_file()
    assert report_main([str(tmp_path / "missing")]) == 2
    assert "is not a directory" in capsys.readouterr().err


# ---------------------------------------------------------------------------- cells that cannot mislead

STUDY_E_CIFAR = {"data.batch_size": 32, "data.steps_per_epoch": 128, "data.val_size": 0, "trainer.max_epochs": 1000}


def _cells(root: Path, reference: str) -> dict[str, dict]:
    return {c["cell"]: c for c in build_report(root, reference=reference).comparison()}


def test_a_run_fills_only_cells_of_its_dataset(tmp_path):
    # a MNIST run with every other CIFAR setting of the thesis: not a CIFAR-10 number
    _job(tmp_path, "0", ["model=keras_cnn"], 0.99, choices={"data": "mnist"}, config=STUDY_E_CIFAR)
    assert _cells(tmp_path, "study_e/cifar")["CNN, CIFAR-10"]["ours"] == "not run"
    # and a run on the thesis's dataset with another batch size fills nothing either
    _job(tmp_path, "1", ["model=keras_cnn"], 0.75, choices={"data": "cifar10"}, config={**STUDY_E_CIFAR,
         "data.batch_size": 128})  # fmt: skip
    assert _cells(tmp_path, "study_e/cifar")["CNN, CIFAR-10"]["ours"] == "not run"


def test_a_stand_in_fills_a_cell_only_when_its_command_says_so_and_is_marked(tmp_path):
    _job(tmp_path, "0", ["model=keras_cnn", "data=cifar10_jpeg"], 0.74, choices={"data": "cifar10_jpeg"},
         config=STUDY_E_CIFAR)  # fmt: skip
    assert _cells(tmp_path, "study_e/cifar")["CNN, CIFAR-10"]["ours"] == "not run"
    _job(tmp_path, "1", ["model=keras_cnn", "data=cifar10_jpeg", "report.stand_in=true"], 0.76,
         choices={"data": "cifar10_jpeg"}, config=STUDY_E_CIFAR, stand_in=True)  # fmt: skip
    cell = _cells(tmp_path, "study_e/cifar")["CNN, CIFAR-10"]
    assert cell["ours"] == "0.7600" and cell["n"] == "1" and cell["data"] == "stand-in: cifar10_jpeg"
    report = build_report(tmp_path, reference="study_e/cifar").markdown()
    assert "stand-in: cifar10_jpeg" in report
    # a run on the paper's own dataset replaces the stand-in
    _job(tmp_path, "2", ["model=keras_cnn"], 0.75, choices={"data": "cifar10"}, config=STUDY_E_CIFAR)
    cell = _cells(tmp_path, "study_e/cifar")["CNN, CIFAR-10"]
    assert cell["ours"] == "0.7500" and cell["data"] == "paper's"


def test_bits_cells_need_the_final_model(tmp_path):
    config = {"model.hash_bits": 48, "data.val_size": 0}
    _job(tmp_path, "0", [], 0.99, choices={"data": "mnist", "ablation": "study_a/maxout"}, config=config)
    assert _cells(tmp_path, "study_a/bits")["MNIST, 48 bits"]["ours"] == "not run"
    _job(tmp_path, "1", [], 0.995, choices={"data": "mnist", "ablation": "study_a/final"}, config=config)
    assert _cells(tmp_path, "study_a/bits")["MNIST, 48 bits"]["ours"] == "0.50"


def test_one_run_tested_at_several_epochs_fills_each_epoch_cell(tmp_path):
    tested = {"10": {"test/acc": 0.55}, "30": {"test/acc": 0.60}, "60": {"test/acc": 0.58}}
    _job(tmp_path, "0", ["ablation=study_d/relu"], 0.57, choices={"data": "cifar10", "model": "lenet5"},
         config={"model.activation": "relu", "trainer.max_epochs": 100, "data.val_size": 10000,
                 "optimizer.momentum": 0.9},
         test_epochs={**tested, "100": {"test/acc": 0.57}})  # fmt: skip
    cells = _cells(tmp_path, "study_d/epochs")
    got = [cells[f"original Net, ReLU, {e} epochs"]["ours"] for e in (10, 30, 60, 100)]
    assert got == ["0.5500", "0.6000", "0.5800", "0.5700"]
    assert cells["original Net, Leaky ReLU, 10 epochs"]["ours"] == "not run"
    assert "original Net, ReLU, 10 epochs, no momentum" not in cells  # plain SGD's reading: study_d_no_momentum's
    # a run stopped by a signal (resumable) and one still going say so in the cells they would fill
    tutorial = {"trainer.max_epochs": 10, "data.val_size": 10000, "optimizer.momentum": 0.9}
    leaky = {**tutorial, "model.activation": "leaky_relu"}
    _job(tmp_path, "1", ["ablation=study_d/resnet"], None, status="interrupted",
         choices={"data": "cifar10", "model": "resnet18"}, config=tutorial)  # fmt: skip
    _job(tmp_path, "2", ["ablation=study_d/leaky_relu"], None, status="running",
         choices={"data": "cifar10", "model": "lenet5"}, config=leaky)  # fmt: skip
    cells = _cells(tmp_path, "study_d/epochs")
    assert cells["ResNet (depth not stated; resnet18 here), 10 epochs"]["ours"] == "interrupted"
    assert cells["original Net, Leaky ReLU, 10 epochs"]["ours"] == "running"


def test_study_d_readings_of_gradient_descent_fill_their_own_cells(tmp_path):
    config = {"model.activation": "relu", "trainer.max_epochs": 30, "data.val_size": 10000}
    _job(tmp_path, "0", ["ablation=study_d/relu"], 0.63, choices={"data": "cifar10", "model": "lenet5"},
         config={**config, "optimizer.momentum": 0.0}, test_epochs={"10": {"test/acc": 0.55}})  # fmt: skip
    cells = _cells(tmp_path, "study_d/epochs")
    assert [cells[f"original Net, ReLU, {e} epochs, no momentum"]["ours"] for e in (10, 30)] == ["0.5500", "0.6300"]
    assert cells["original Net, Swish, 30 epochs, no momentum"]["ours"] == "not run"
    # the tutorial's momentum 0.9 cells belong to another experiment: named in one line, not listed as not run
    assert len(cells) == 17 and "original Net, ReLU, 30 epochs" not in cells
    report = build_report(tmp_path, reference="study_d/epochs").markdown()
    assert "Not listed: the 17 cells read with `optimizer.momentum=0.9`, which no run here has " \
           "(`experiment=study_d` runs them)." in report  # fmt: skip
    _job(tmp_path, "1", ["ablation=study_d/relu"], 0.57, choices={"data": "cifar10", "model": "lenet5"},
         config={**config, "optimizer.momentum": 0.9})  # fmt: skip
    cells = _cells(tmp_path, "study_d/epochs")
    assert cells["original Net, ReLU, 30 epochs"]["ours"] == "0.5700"
    assert cells["original Net, ReLU, 30 epochs, no momentum"]["ours"] == "0.6300"
    assert len(cells) == 34 and "Not listed" not in build_report(tmp_path, reference="study_d/epochs").markdown()


def test_publish_writes_the_report_provenance_and_curves_but_no_checkpoint(tmp_path):
    sweep, dest = tmp_path / "sweep", tmp_path / "results" / "study_e_mnist"
    environment = {"cpu": "Test CPU 9000", "commit": "abc123", "threads": 1}
    for i, (model, acc) in enumerate((("keras_cnn", 0.991), ("keras_fcn", 0.992))):
        job = _job(sweep, str(i), [f"model={model}", "seed=1"], acc, model=model, reference="study_e/mnist",
                   config={"trainer.max_epochs": 10, "data.batch_size": 128, "data.val_size": 0},
                   environment=environment)  # fmt: skip
        (job / "curves.png").write_bytes(b"\x89PNG fake")
        (job / "checkpoints").mkdir()
        (job / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    (sweep / "multirun.yaml").write_text("hydra:\n  overrides:\n    task: [experiment=study_e_mnist, seed=1]\n")
    assert report_main([str(sweep), "--no-write", "--publish", str(dest)]) == 0
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert files == ["comparison.csv", "curves/model=keras_cnn,seed=1.png", "curves/model=keras_fcn,seed=1.png",
                     "report.csv", "report.md"]  # fmt: skip
    report = (dest / "report.md").read_text()
    assert "`python train.py experiment=study_e_mnist seed=1`" in report
    assert "`abc123`" in report and "Test CPU 9000" in report and "(2 runs)" in report
    assert "CNN, MNIST" in (dest / "comparison.csv").read_text()


def test_publish_refuses_a_sweep_without_finished_runs(tmp_path, capsys):
    _job(tmp_path / "sweep", "0", ["optimizer.lr=-1"], None, status="failed", error="ConfigError: lr")
    assert report_main([str(tmp_path / "sweep"), "--publish", str(tmp_path / "results")]) == 2
    assert "no finished run" in capsys.readouterr().err and not (tmp_path / "results").exists()


def test_results_table_lists_every_paper_cell_with_ours_where_published(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    for seed, acc in ((1, 0.9915), (2, 0.9911)):
        _job(sweep, str(seed), ["model=keras_fcn", f"seed={seed}"], acc, model="keras_fcn", reference="study_e/mnist",
             config={"trainer.max_epochs": 10, "data.batch_size": 128, "data.val_size": 0})  # fmt: skip
    _job(sweep, "3", ["model=keras_cnn"], None, status="interrupted", model="keras_cnn", reference="study_e/mnist",
         config={"trainer.max_epochs": 10, "data.batch_size": 128, "data.val_size": 0})  # fmt: skip
    results = tmp_path / "results"
    assert report_main([str(sweep), "--no-write", "--publish", str(results / "study_e_mnist")]) == 0
    (results / "costs.yaml").write_text("study_c/ablation: 70 runs, about 9 h on one GPU\n")
    capsys.readouterr()
    assert report_main(["--results", str(results)]) == 0
    table = capsys.readouterr().out.splitlines()
    cells = sum(len(load(name).cells) for name in available())
    assert len(table) == 2 + cells  # every paper cell, once
    fcn = next(line for line in table if "| FCN, MNIST |" in line)
    assert "0.9913 ± 0.0003" in fcn and "| reproduced |" in fcn and "results/study_e_mnist/report.md" in fcn
    assert "| not run |" in next(line for line in table if "| CNN, MNIST |" in line)
    assert "about 9 h on one GPU" in next(line for line in table if line.startswith("| study_c/ablation"))


def test_a_verdict_needs_a_spread_the_paper_states_or_our_seeds_give():
    assert verdict(Stat(0.70, 0.0, 1), 0.75, None) == "1 run"  # one seed, no stated spread: undecided
    assert verdict(Stat(0.7505, 0.0, 1), 0.75, 0.001) == "reproduced"
    assert verdict(Stat(0.70, 0.0, 1), 0.75, 0.001) == "deviates"
    assert verdict(Stat(0.74, 0.01, 3), 0.75, None) == "reproduced"  # within two standard deviations of the seeds
    assert verdict(Stat(0.70, 0.01, 3), 0.75, None) == "deviates"
    assert verdict(Stat(float("nan"), float("nan"), 0), 0.75, None) == ""


def test_seeds_swept_later_into_the_sweep_folder_join_its_cells_and_commands(tmp_path):
    sweep, dest = tmp_path / "sweep", tmp_path / "results" / "study_e_mnist"
    config = {"trainer.max_epochs": 10, "data.batch_size": 128, "data.val_size": 0}
    runs = [(sweep, "0", [], 42, 0.9910), (sweep / "seed43", "0", ["seed=43"], 43, 0.9920)]
    for root, name, extra, seed, acc in runs:
        _job(root, name, ["model=keras_fcn", *extra], acc, model="keras_fcn", reference="study_e/mnist", seed=seed,
             config=config)  # fmt: skip
        task = ", ".join(["experiment=study_e_mnist", *extra])
        (root / "multirun.yaml").write_text(f"hydra:\n  overrides:\n    task: [{task}]\n")
    assert report_main([str(sweep), "--no-write", "--publish", str(dest)]) == 0
    fcn = _cells(sweep, "study_e/mnist")["FCN, MNIST"]
    assert fcn["n"] == "2" and fcn["ours"] == "0.9915 ± 0.0007"
    report = (dest / "report.md").read_text()
    first, more = "python train.py experiment=study_e_mnist", "python train.py experiment=study_e_mnist seed=43"
    assert f"- commands: `{first}`; `{more}`" in report
