"""A checkpoint that would run code when unpickled is called what it is (issue 29 item 28), not 'corrupted'."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from gan_cli.checkpoint import load_checkpoint
from gan_cli.errors import GanError


class RunsAShellCommand:
    def __reduce__(self):
        return (os.system, ("echo this would run on load",))


@pytest.mark.parametrize("writer", ["torch.save", "pickle0", "pickle2", "pickle4"])
def test_a_pickle_that_calls_os_system_is_said_to_hold_code_and_was_refused(tmp_path: Path, writer: str) -> None:
    path = tmp_path / "evil.pt"
    payload = {"format": "gan_cli/1", "x": RunsAShellCommand()}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=int(writer[-1])))  # torch's reader stops early on 0 and 4
    with pytest.raises(GanError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert "corrupted" not in message, message
    assert "holds code" in message and "system" in message and "refused" in message, message
    assert "weights_only=False" not in message  # torch's advice to load it anyway is never repeated


def test_random_bytes_are_still_called_corrupted(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01" + b"\xff" * 40)
    with pytest.raises(GanError, match="corrupted"):
        load_checkpoint(bad)
