"""Checkpoints are written atomically and read without running code."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from gan_cli.checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint
from gan_cli.errors import GanError


def payload(step: int, **more) -> dict:
    """The smallest dict load_checkpoint accepts as a gan checkpoint."""
    return {"step": step, "config": {}, "data_spec": {}, "models": {"G": {}}, **more}


def test_atomic_save_replaces_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints" / "last.pt"
    save_checkpoint(payload(1, w=torch.ones(3)), path)
    save_checkpoint(payload(2, w=torch.zeros(3)), path)
    ckpt, _ = load_checkpoint(path)
    assert ckpt["step"] == 2 and torch.equal(ckpt["w"], torch.zeros(3))
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]


def test_failed_save_keeps_the_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(payload(1), path)

    class Unsaveable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        save_checkpoint(payload(2, bad=Unsaveable()), path)
    assert load_checkpoint(path)[0]["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_run_dir_resolves_to_last(tmp_path: Path) -> None:
    save_checkpoint(payload(1), tmp_path / "checkpoints" / "last.pt")
    assert resolve_checkpoint(tmp_path) == tmp_path / "checkpoints" / "last.pt"
    with pytest.raises(GanError, match="does not exist"):
        resolve_checkpoint(tmp_path / "checkpoints" / "nope.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GanError, match="No checkpoint in"):
        resolve_checkpoint(tmp_path / "empty")


class Payload:
    def __reduce__(self):
        return (print, ("this would run on load",))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": "gan_cli/1", "x": Payload()}, path)
    with pytest.raises(GanError, match="weights_only=True"):
        load_checkpoint(path)


def test_corrupted_and_foreign_files_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(GanError, match="corrupted"):
        load_checkpoint(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(GanError, match="not a gan checkpoint"):
        load_checkpoint(foreign)
    pickled = tmp_path / "pickled.pt"
    pickled.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(GanError):
        load_checkpoint(pickled)


def test_a_checkpoint_missing_what_sample_eval_and_resume_read_is_named(tmp_path: Path) -> None:
    path = tmp_path / "cut.pt"
    full = payload(3)
    del full["models"]
    save_checkpoint(full, path)
    with pytest.raises(GanError, match="is incomplete: it lacks models"):
        load_checkpoint(path)
    save_checkpoint(payload(3, models={"D": {}}), path)
    with pytest.raises(GanError, match="lacks models.G"):
        load_checkpoint(path)


def test_a_text_file_or_random_bytes_are_called_what_they_are_and_never_get_weights_only_false_advice(
    tmp_path: Path,
) -> None:
    text = tmp_path / "notes.pt"
    text.write_text("these are my notes, not a checkpoint\n")
    noise = tmp_path / "noise.pt"
    noise.write_bytes(bytes(range(256)) * 8)
    for path in (text, noise):
        with pytest.raises(GanError) as err:
            load_checkpoint(path)
        message = str(err.value)
        assert "weights_only=False" not in message and "other than tensors" not in message, message
        assert "corrupted or not a PyTorch file" in message
