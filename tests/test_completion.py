"""TAB completion for `gan` (issue 29 item 7): the script `gan -sc install=bash` prints is bound to `gan`, completes
the subcommands, and after `gan train|sample|eval` each command's config groups, options and keys."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import gan_env, run_gan


def query(line: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shell: str = "bash") -> list[str]:
    """What `gan -sc query=bash` answers for the command line `line`, as the bash function asks it."""
    monkeypatch.setenv("COMP_LINE", line)
    monkeypatch.setenv("COMP_POINT", str(len(line)))
    proc = run_gan("-sc", f"query={shell}", cwd=tmp_path, check=True)
    return proc.stdout.split()


def test_the_query_completes_subcommands_then_each_commands_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gan_cli.cli import SUBCOMMANDS

    assert query("gan tr", tmp_path, monkeypatch) == ["train"]
    assert query("gan ", tmp_path, monkeypatch) == list(SUBCOMMANDS)
    assert query("gan train model=ml", tmp_path, monkeypatch) == ["model=mlp"]
    assert query("gan train train.ste", tmp_path, monkeypatch) == ["train.steps="]
    assert query("gan sample ck", tmp_path, monkeypatch) == ["ckpt="]  # sample's own config, not train's
    assert "model=" in query("gan train ", tmp_path, monkeypatch)
    assert query("gan report ", tmp_path, monkeypatch) == []  # folders: left to the shell's file-name completion


def test_the_script_is_bound_to_gan_wherever_the_flag_stands(tmp_path: Path) -> None:
    for args in (["-sc", "install=bash"], ["train", "-sc", "install=bash"]):
        script = run_gan(*args, cwd=tmp_path, check=True).stdout
        assert script.rstrip().endswith("-F hydra_bash_completion gan"), script[-300:]
    proc = run_gan("-sc", "install=tcsh", cwd=tmp_path)
    assert proc.returncode == 2 and "bash, zsh, fish" in proc.stderr


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completes_gan_train_model_ml_to_model_mlp(tmp_path: Path) -> None:
    """End to end: bash sources the installed script and calls its function as TAB would."""
    script = run_gan("-sc", "install=bash", cwd=tmp_path, check=True).stdout
    (tmp_path / "completion.sh").write_text(script)
    gan = Path(sys.executable).parent / "gan"
    if not gan.is_file():
        pytest.skip("the gan console script is not installed beside this Python")
    words = {"gan train model=ml": "model=mlp", "gan tr": "train"}
    for line, expected in words.items():
        program = (
            "source completion.sh\n"
            f"COMP_LINE='{line}'; COMP_POINT={len(line)}; COMP_WORDS=({line}); COMP_CWORD={len(line.split()) - 1}\n"
            "hydra_bash_completion\n"
            'printf "%s\\n" "${COMPREPLY[@]}"\n'
        )
        env = {**gan_env(), "PATH": f"{gan.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        proc = subprocess.run(
            ["bash", "-c", program], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )
        assert proc.stdout.split() == [expected], (line, proc.stdout, proc.stderr)
