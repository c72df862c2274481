"""`gan train`'s command line beyond key=value (issue 29 items 5, 6, 7, 9): Hydra's flags wherever they stand, a
removed key refused with every flag, a user's primary config (`-cn`) found, recorded and resumed, and shell completion
bound to `gan` itself."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from helpers import GAUSS1D, run_gan


def one_error(proc: subprocess.CompletedProcess) -> str:
    """The refusal: exit 2, one `gan: error:` paragraph, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("gan: error: "), proc.stderr
    return lines[0]


def user_conf(where: Path) -> Path:
    """A --config-dir with one model option of its own (the mlp under another name)."""
    conf = where / "my_conf"
    (conf / "model").mkdir(parents=True)
    (conf / "model" / "wide.yaml").write_text("defaults:\n  - mlp\n  - _self_\n\ng_width: 48\n")
    return conf


# ---------------------------------------------------------------------------------------------
# 9: a removed key is refused by name, with --cfg and --help too
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flag", ["--cfg=job", "--help"])
def test_removing_a_key_is_refused_with_a_flag_too(tmp_path: Path, flag: str) -> None:
    error = one_error(run_gan("train", "~model.d_norm", *flag.split("="), cwd=tmp_path))
    assert "cannot be removed" in error and "model.d_norm=none" in error, error
    assert "does not support deletion" not in error


# ---------------------------------------------------------------------------------------------
# 5: --cfg after a --config-dir, and with -m, prints the config as Hydra does
# ---------------------------------------------------------------------------------------------
def test_cfg_job_after_a_config_dir_prints_the_config(tmp_path: Path) -> None:
    user_conf(tmp_path)
    proc = run_gan("train", "--config-dir", "my_conf", "model=wide", "--cfg", "job", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "unrecognized arguments" not in proc.stderr
    assert "name: mlp" in proc.stdout and "g_width: 48" in proc.stdout
    assert not (tmp_path / "outputs").exists()


def test_cfg_job_with_multirun_prints_each_jobs_config(tmp_path: Path) -> None:
    proc = run_gan("train", "-m", "model=mlp", "--cfg", "job", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "name: mlp" in proc.stdout and "Error parsing" not in proc.stderr
    swept = run_gan("train", "-m", "loss=ns,hinge", "--cfg", "job", "--package", "loss", cwd=tmp_path)
    assert swept.returncode == 0, swept.stderr
    assert "# job 0: loss=ns" in swept.stdout and "# job 1: loss=hinge" in swept.stdout
    assert "objective: ns" in swept.stdout and "objective: hinge" in swept.stdout
    assert not (tmp_path / "multirun").exists()


# ---------------------------------------------------------------------------------------------
# 6: a primary config of the user's (-cn), found in --config-dir (or --config-path), recorded and resumed
# ---------------------------------------------------------------------------------------------
MINE = "defaults:\n  - train\n  - _self_\n\ntrain:\n  steps: 2\n  log_every: 1\n  threads: 1\n"


def test_a_primary_config_of_ones_own_trains_records_and_resumes(tmp_path: Path) -> None:
    conf = user_conf(tmp_path)
    (conf / "mine.yaml").write_text(MINE)
    run = tmp_path / "run"
    args = ["-cn", "mine", *GAUSS1D, f"hydra.run.dir={run}"]
    first = run_gan("train", "--config-dir", "my_conf", *args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "step 2/2" in first.stdout
    assert "config_name: mine" in (run / ".hydra" / "hydra.yaml").read_text()
    resumed = run_gan("train", f"resume={run}", "train.steps=3", cwd=tmp_path)  # the run's own folder and name
    assert resumed.returncode == 0, resumed.stderr
    assert "step 3/3" in resumed.stdout
    record = next((run / ".hydra" / "resumes").glob("*/config.yaml")).read_text()
    assert "log_every: 1" in record and "steps: 3" in record


def test_config_path_is_a_folder_of_configs_beside_gans_own(tmp_path: Path) -> None:
    conf = user_conf(tmp_path)
    (conf / "mine.yaml").write_text(MINE)
    proc = run_gan(
        "train", "--config-path", "my_conf", "--config-name", "mine", "model=wide", "--cfg", "job", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert "steps: 2" in proc.stdout and "g_width: 48" in proc.stdout


def test_a_primary_config_that_is_not_there_or_not_gans_is_one_paragraph(tmp_path: Path) -> None:
    conf = user_conf(tmp_path)
    error = one_error(run_gan("train", "--config-dir", "my_conf", "-cn", "nope", cwd=tmp_path))
    assert "nope" in error and "my_conf" in error, error
    (conf / "bare.yaml").write_text("seed: 3\n")
    error = one_error(run_gan("train", "--config-dir", "my_conf", "-cn", "bare", cwd=tmp_path))
    assert "- train" in error, error


def test_a_saved_primary_config_name_is_data() -> None:
    from gan_cli.errors import GanError
    from gan_cli.saved_overrides import check_saved_config_name

    assert check_saved_config_name("mine", Path("run")) == "mine"
    for bad in ("../../etc/passwd", "pkg://x", "a b", 3):
        with pytest.raises(GanError, match="config name"):
            check_saved_config_name(bad, Path("run"))
