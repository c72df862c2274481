"""Inputs that ended in a traceback, where one paragraph was promised (issue 29 items 26 and 28): each now gives a
`gan: error:` paragraph naming the bad value and what is allowed, exit code 2 (4 for a disk), and no traceback."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import struct
import time
import zlib
from pathlib import Path

import pytest
import torch
from helpers import TINY, TOY, compose_train, run_gan
from omegaconf import OmegaConf

from gan_cli.errors import IO_FAILED, GanError


def refused(proc, *words: str) -> str:
    """The one paragraph a refused command printed, checked: exit 2, no traceback, every word in it."""
    err = proc.stderr
    assert proc.returncode == 2 and "Traceback" not in err + proc.stdout, err
    assert err.count("gan: error:") == 1, err
    for word in words:
        assert word in err, (word, err)
    return err


# ---------------------------------------------------------------------------------------------
# options: NaN, seeds out of range, a group option given as a path, full-width digits
# ---------------------------------------------------------------------------------------------
CONFIG_CASES = {
    "lr_nan": (["train", *TINY, "optimizer.lr=nan"], ["optimizer.lr=nan", "NaN", "optimizer.lr=0.0002"]),
    "seed_train": (["train", *TINY, f"seed={2**64}"], [f"seed={2**64}", "0 to 2^63 - 1"]),
    "seed_sample": (["sample", "ckpt=run", f"seed={2**64}"], [f"seed={2**64}", "0 to 2^63 - 1"]),
    "seed_eval": (["eval", "ckpt=run", f"seed={2**63}"], [f"seed={2**63}", "0 to 2^63 - 1"]),
    "truncation_nan": (["sample", "ckpt=run", "truncation=nan"], ["truncation=nan", "NaN"]),
    "group_path": (["train", *TINY, "model=../base/model"], ["model=../base/model", "dcgan, lapgan, mlp"]),
    "group_path_swept": (["train", "-m", *TINY, "model=../base/model,mlp"], ["model=../base/model", "never a path"]),
    "full_width_digits": (["train", *TINY, "train.steps=１００"], ["'１' (FULLWIDTH DIGIT ONE)", "train.steps=100"]),
}


@pytest.mark.parametrize("case", CONFIG_CASES)
def test_a_bad_value_is_one_paragraph_before_anything_runs(workdir: Path, case: str) -> None:
    args, words = CONFIG_CASES[case]
    refused(run_gan(*args, cwd=workdir), *words)
    assert not (workdir / "outputs").exists() and not (workdir / "multirun").exists()


def test_the_largest_seed_draws_and_orders_the_data_and_a_non_ascii_letter_is_told_to_be_quoted() -> None:
    from gan_cli.data.batching import IndexStream
    from gan_cli.runtime import seed_everything

    seed_everything(2**63 - 1)
    stream = IndexStream(10, 4, 2**63 - 1)  # the data order's seed is derived from it: once it overflowed 64 bits
    assert len(stream.next_indices()) == 4
    seed_everything(0)
    from gan_cli.composition import non_ascii_override

    said = non_ascii_override("dataset.path=/données")
    assert said and "LATIN SMALL LETTER E WITH ACUTE" in said and """'dataset.path="/données"'""" in said


def test_an_override_of_a_selector_key_is_checked_not_a_traceback() -> None:
    from gan_cli.arguments import precheck

    typed = [*TOY, "dataset.name=ring8", "loss.objective=hinge"]
    assert precheck("train", typed, typed=typed) == []


# ---------------------------------------------------------------------------------------------
# malformed checkpoints, through gan sample, gan eval and gan train resume=
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def toy_run(tmp_path_factory) -> Path:
    """A finished 4-step toy run (ring8, mlp) with its checkpoints, for the cases that need a run directory."""
    cwd = tmp_path_factory.mktemp("toy")
    run_gan("train", *TOY, "train.steps=4", "train.ckpt_every=4", "hydra.run.dir=run", cwd=cwd, check=True)
    return cwd / "run"


def _edit(ckpt: dict, where: str, value) -> None:
    *path, last = where.split(".")
    for key in path:
        ckpt = ckpt[key]
    if value is KeyError:
        del ckpt[last]
    else:
        ckpt[last] = value


MALFORMED = {  # where, new value (KeyError: removed), the words of the refusal
    "config_not_a_mapping": ("config", 5, "its config is 5"),
    "group_not_a_mapping": ("config.model", "mlp", "its config.model is 'mlp'"),
    "no_model_name": ("config.model.name", KeyError, "names no model.name"),
    "data_spec": ("data_spec", {"name": "ring8"}, "its data_spec is a dict"),
    "models": ("models", 5, "its models is 5"),
    "state_dict": ("models.G", [1, 2], "its models.G is a list"),
    "no_D": ("models.D", KeyError, "its models.D is null"),
    "step": ("step", "four", "its step is 'four'"),
}


def _edited_checkpoint(toy_run: Path, tmp_path: Path, where: str, value) -> Path:
    """The toy run's last.pt with one part replaced (`_edit`), saved beside the test."""
    ckpt = torch.load(toy_run / "checkpoints" / "last.pt", weights_only=True)
    _edit(ckpt, where, value)
    path = tmp_path / "edited.pt"
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_checkpoint_is_named_by_what_is_wrong_for_sample_eval_and_resume(
    toy_run: Path, tmp_path: Path, case: str
) -> None:
    from gan_cli.arguments import check_resume
    from gan_cli.runtime import load_generator

    where, value, words = MALFORMED[case]
    path = _edited_checkpoint(toy_run, tmp_path, where, value)
    with pytest.raises(GanError, match="is malformed") as sampled:  # gan sample and gan eval load G this way
        load_generator(str(path), torch.device("cpu"))
    assert words in str(sampled.value) and "written by another program" in str(sampled.value)
    with pytest.raises(GanError, match="is malformed"):
        check_resume(compose_train(*TOY, "train.steps=8", f"resume={path}"))


RESUME_ONLY = {
    "no_optimizers": ("optimizers", KeyError, "it lacks optimizers"),
    "optimizer_state": ("optimizers.G", {"state": 5}, "its optimizers are not"),
    "no_rng": ("rng", KeyError, "it lacks rng"),
}


@pytest.mark.parametrize("case", RESUME_ONLY)
def test_a_checkpoint_without_its_training_state_samples_but_is_not_resumed(
    toy_run: Path, tmp_path: Path, case: str
) -> None:
    from gan_cli.arguments import check_resume
    from gan_cli.runtime import load_generator

    where, value, words = RESUME_ONLY[case]
    path = _edited_checkpoint(toy_run, tmp_path, where, value)
    load_generator(str(path), torch.device("cpu"))
    with pytest.raises(GanError, match=words):
        check_resume(compose_train(*TOY, "train.steps=8", f"resume={path}"))


@pytest.mark.slow
def test_the_three_commands_say_it_in_one_paragraph(toy_run: Path, tmp_path: Path) -> None:
    ckpt = torch.load(toy_run / "checkpoints" / "last.pt", weights_only=True)
    ckpt["data_spec"] = 5
    torch.save(ckpt, tmp_path / "edited.pt")
    for args in (["sample", "out=s.png"], ["eval"], ["train", "train.steps=8"]):
        key = "resume" if args[0] == "train" else "ckpt"
        refused(run_gan(*args, f"{key}={tmp_path / 'edited.pt'}", cwd=tmp_path), "is malformed", "its data_spec is 5")


# ---------------------------------------------------------------------------------------------
# data: an image over Pillow's limit, a user's dataset function that raises, a limit above the images
# ---------------------------------------------------------------------------------------------
def huge_png(path: Path, width: int = 20000, height: int = 10000) -> None:
    """A PNG whose header says width x height (1 bit a pixel) and holds no pixels: Pillow refuses it on opening."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + header + chunk(b"IEND", b""))


def small_pngs(folder: Path, n: int) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("L", (8, 8), 30 * i).save(folder / f"a{i:02d}.png")


def folder_cfg(path: Path, limit=None):
    return OmegaConf.merge(compose_train("dataset=image_folder").dataset, {"path": str(path), "limit": limit})


def test_an_image_over_pillows_pixel_limit_is_named_with_its_size(tmp_path: Path) -> None:
    from gan_cli.data import load_dataset
    from gan_cli.data.image_folder import ImageFiles

    small_pngs(tmp_path / "imgs", 3)
    huge_png(tmp_path / "imgs" / "big.png")
    with pytest.raises(GanError) as caught:  # the images looked at before training
        load_dataset(folder_cfg(tmp_path / "imgs"), 0)
    message = str(caught.value)
    assert "big.png" in message and "200,000,000 pixels" in message and "decompression bomb" in message, message
    files = ImageFiles(tmp_path / "imgs", 8, 1, None)  # one read while training (in a DataLoader worker, perhaps)
    with pytest.raises(OSError) as read:
        files[files.files.index(tmp_path / "imgs" / "big.png")]
    assert read.value.errno == errno.EFBIG and "200,000,000 pixels" in read.value.strerror
    assert read.value.filename.endswith("big.png")


def test_a_limit_above_the_number_of_unlabelled_images_takes_them_all(tmp_path: Path) -> None:
    from gan_cli.data.image_folder import ImageFiles

    small_pngs(tmp_path / "imgs", 3)
    assert len(ImageFiles(tmp_path / "imgs", 8, 1, limit=256)) == 3


def broken_loader(seed: int, **args):
    raise ValueError("no such file: /data/blobs.npz")


def test_a_users_dataset_that_raises_is_named_with_its_call_and_error() -> None:
    from gan_cli.data import load_dataset

    cfg = compose_train(f"dataset._target_={__name__}.broken_loader", "dataset.name=blobs", "+dataset.args.n=20")
    with pytest.raises(GanError) as caught:
        load_dataset(cfg.dataset, 3)
    message = str(caught.value)
    assert f"{__name__}.broken_loader(seed=3, n=20)" in message, message
    assert "ValueError: no such file: /data/blobs.npz" in message and "dataset=blobs" in message, message


# ---------------------------------------------------------------------------------------------
# a model too large to build (the pre-check runs out of memory)
# ---------------------------------------------------------------------------------------------
def test_a_width_too_large_to_build_names_the_option_and_the_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    """The allocator's failure stands in for a real one (model.g_width=300000 asks for 11.5 TB after seconds of
    allocating the smaller layers); the estimate is counted for real, on the meta device."""
    import gan_cli.training.setup as setup

    real = setup.build_models

    def allocator_fails(*args, **kwargs):
        if torch.empty(0).device.type != "meta":
            raise RuntimeError(
                "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
                "you tried to allocate 11520000000000 bytes. Error code 12 (Cannot allocate memory)"
            )
        return real(*args, **kwargs)

    monkeypatch.setattr(setup, "build_models", allocator_fails)
    with pytest.raises(GanError) as caught:
        setup.check_options(compose_train(*TINY, "model.g_width=300000"))
    message = str(caught.value)
    assert "model.g_width=300000 makes the generator of model=dcgan too large" in message, message
    assert "2,880,771,000,100 weights" in message and "default is 64" in message, message


# ---------------------------------------------------------------------------------------------
# run directories: gan report on a malformed status.json, .lock a folder, gan eval on a full disk
# ---------------------------------------------------------------------------------------------
BAD_STATUS = {
    "not_json": ('{"status": "finished", "step": ', "is not valid JSON"),
    "a_list": ("[1, 2]", "holds a JSON list"),
    "wrong_types": ('{"status": 5, "step": "a", "seconds": "z", "final": {"loss/D": "x"}}', "(step, status, seconds"),
}


@pytest.mark.parametrize("case", BAD_STATUS)
def test_gan_report_calls_a_malformed_status_json_unreadable(toy_run: Path, tmp_path: Path, case: str) -> None:
    from gan_cli.report.runs import read_run
    from gan_cli.rundir import read_status

    text, words = BAD_STATUS[case]
    run = tmp_path / "run"
    shutil.copytree(toy_run, run)
    (run / "status.json").write_text(text)
    row = read_run(run, "run")
    assert row.status == "unreadable" and words in row.reason, row
    assert read_status(run) == {}  # a resume reads its seconds and warnings: none rather than a traceback
    if case == "wrong_types":
        proc = run_gan("report", str(run), cwd=tmp_path)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        assert "unreadable" in proc.stdout and words in proc.stdout.replace("\n", " "), proc.stdout


def test_a_lock_that_is_a_folder_is_one_paragraph_with_a_command_that_removes_it(tmp_path: Path) -> None:
    """(A resume checks the lock before Hydra starts: `check_resume`; `gan train resume=` said it in one paragraph
    before, with `rm` for a folder.)"""
    from gan_cli.rundir import check_lock_file

    (tmp_path / ".lock").mkdir()
    with pytest.raises(GanError) as caught:
        check_lock_file(tmp_path)
    assert "is a folder" in str(caught.value) and f"rm -r {tmp_path / '.lock'}" in str(caught.value), caught.value


def test_gan_eval_on_a_full_disk_names_the_file_and_keeps_the_scores(
    toy_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gan_cli.evaluate as evaluate
    from gan_cli.config import command_defaults

    def disk_full(path, text):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    run = tmp_path / "run"
    shutil.copytree(toy_run, run)
    monkeypatch.setattr(evaluate, "write_atomic", disk_full)
    cfg = OmegaConf.merge(command_defaults("eval"), {"ckpt": str(run), "device": "cpu", "n": 200})
    with pytest.raises(GanError) as caught:
        evaluate.evaluate(cfg)
    message = str(caught.value)
    assert caught.value.exit_code == IO_FAILED and "metrics.json" in message and "disk is full" in message, message
    assert "The scores were: " in message and "hq200" in message, message
    assert not (run / "metrics.json").exists()


# ---------------------------------------------------------------------------------------------
# a killed worker of a distributed run
# ---------------------------------------------------------------------------------------------
def dies(job: dict) -> None:
    """A worker: rank 1 is killed (as by the OOM killer or kill -9); rank 0 then loses its peer and raises."""
    if os.environ["RANK"] == "1":
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(1.0)
    raise RuntimeError("[gloo/transport/tcp/pair.cc:545] Read error [127.0.0.1]:43213: Connection reset by peer")


@pytest.mark.slow
def test_a_killed_worker_is_gans_paragraph_without_torchs_tracebacks(
    tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    from gan_cli.training.launch import launch_local

    with pytest.raises(GanError) as caught:
        launch_local(2, tmp_path, dies, {}, shutdown_timeout=5)
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err and "Terminating process" not in err, err
    assert str(caught.value).startswith("Worker rank 1 of the distributed run failed (Signal 9"), caught.value
