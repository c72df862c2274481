"""gan_cli.api: the example of docs/api.md runs as written; train() twice in one process gives two runs, and a user's
mistake is a GanError the caller catches, before training or inside it, never an exit of the process."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, gan_env


def docs_api_example() -> str:
    """The one ```python block of docs/api.md's Example section."""
    text = (REPO / "docs" / "api.md").read_text()
    section = text.split("## Example", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def _python(code: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """A fresh interpreter, as a notebook's kernel is: Hydra's and logging's state start empty."""
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env or gan_env(), capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_the_docs_example_runs_as_written(workdir, lenet_cache):
    proc = _python(docs_api_example(), workdir, {**gan_env(), "GAN_CACHE_DIR": str(lenet_cache)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    [run] = list((workdir / "outputs").glob("*/*"))
    assert (run / "generator.pt").is_file() and (run / "metrics.json").is_file()
    assert json.loads((run / "status.json").read_text())["status"] == "finished"


TWICE_AND_ERRORS = r"""
import json
from gan_cli import api
from gan_cli.errors import GanError
tiny = {"model": "mlp", "dataset": "ring8", "+debug": "tiny", "model.z_dim": 4, "train": {"steps": 2}}
a, b = api.train(tiny), api.train(tiny)  # the same second, the same process: two directories
errors = []
for bad in (["model.g_width=-3"], ["dataset.limit=0"]):  # refused by the pre-check; refused inside the job
    try:
        api.train(["model=mlp", "dataset=ring8", "+debug=tiny", "train.steps=2", *bad])
    except GanError as err:
        errors.append(str(err))
try:
    api.load(a.dir / "nothing")
except GanError as err:
    errors.append(str(err))
points = a.sample(5, seed=3)
print(json.dumps({"dirs": [str(a.dir), str(b.dir)], "status": [a.status["status"], b.status["status"]],
                  "errors": errors, "shape": list(points.shape), "same": bool((points == a.sample(5, seed=3)).all())}))
"""


@pytest.mark.slow
def test_train_twice_in_one_process_and_errors_are_exceptions(workdir):
    proc = _python(TWICE_AND_ERRORS, workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["dirs"][0] != out["dirs"][1] and out["status"] == ["finished", "finished"]
    assert len(out["errors"]) == 3, out["errors"]
    assert "model.g_width=-3" in out["errors"][0] and "dataset.limit=0" in out["errors"][1]
    assert out["shape"] == [5, 2] and out["same"]


def test_overrides_from_a_dict_are_the_command_lines_words():
    from gan_cli.api import _arguments

    args = _arguments({"model": "mlp", "train": {"steps": 5, "augment": ["color"]}, "resume": None, "x": True})
    assert args == ["model=mlp", "train.steps=5", "train.augment=[color]", "resume=null", "x=true"]
    assert _arguments(["loss=hinge"]) == ["loss=hinge"]


def test_a_string_or_a_flag_is_refused_in_one_paragraph():
    from gan_cli import api
    from gan_cli.errors import GanError

    with pytest.raises(GanError, match="list of overrides"):
        api.train("model=mlp")  # type: ignore[arg-type]
    with pytest.raises(GanError, match="gan train -m"):
        api.train(["-m", "loss=ns,hinge"])


def test_unknown_sample_option_is_a_gan_error(tmp_path):
    from gan_cli.api import Run
    from gan_cli.errors import GanError

    with pytest.raises(GanError, match="gan sample --help"):
        Run(tmp_path).sample(4, colour="red")
