"""`gan export`: the generator as a TorchScript or ONNX file that a process without gan runs, giving what
`gan sample` gives for the same z and labels; what cannot be exported faithfully is refused in one paragraph."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import MNIST, TINY, TOY, TWO_STEPS, model_cfg, run_gan, sample_array

from gan_cli.errors import GanError

# |exported file - gan sample| allowed: TorchScript runs G's own kernels (the same floats in practice); ONNX Runtime
# has kernels of its own, which differ from torch's in the last bits
ATOL = {"torchscript": 1e-5, "onnx": 1e-4}

# run in `python -I` (no PYTHONPATH, no user site, not the working directory) with gan_cli blocked: the file must
# load and run with torch (or onnxruntime) and numpy alone
STANDALONE = r"""
import json, sys
sys.modules["gan_cli"] = None  # `import gan_cli` now raises: nothing below may need it
try:
    import gan_cli
except ImportError:
    pass
else:
    raise SystemExit("gan_cli is importable")
import numpy as np, torch
path, seed, labels, out = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4]
if path.endswith(".pt"):
    extra = {"gan.json": ""}
    G = torch.jit.load(path, _extra_files=extra)
    meta = json.loads(extra["gan.json"])
    run = lambda *xs: G(*xs).numpy()
else:
    import onnx, onnxruntime
    meta = json.loads({p.key: p.value for p in onnx.load(path).metadata_props}["gan.json"])
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    run = lambda *xs: session.run(None, {n: x.numpy() for n, x in zip(names, xs)})[0]
n = len(labels) if labels else 16
# gan sample's z for `seed`: N(0, I) from a generator seeded with it; G's own noise (if any) from the global seed
z = torch.randn(n, meta["z_size"], generator=torch.Generator().manual_seed(seed))
inputs = (z, torch.tensor(labels, dtype=torch.int64)) if meta["num_classes"] else (z,)
torch.manual_seed(seed)
with torch.no_grad():
    np.save(out, run(*inputs))
print(json.dumps(meta))
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Two tiny runs: the default conditional DCGAN on mnist5k, and an unconditional MLP on ring8's points."""
    root = tmp_path_factory.mktemp("export_runs")
    made = {}
    for name, args in (("dcgan", TINY), ("mlp", TOY)):
        made[name] = root / name
        run_gan("train", *args, *TWO_STEPS, f"hydra.run.dir={made[name]}", cwd=root, check=True)
    return made


def _standalone(path: Path, seed: int, labels: list[int], out: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-I", "-c", STANDALONE, str(path), str(seed), json.dumps(labels), str(out)],
        cwd=out.parent,
        capture_output=True,
        text=True,
        timeout=300,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("model,fmt", [("dcgan", "torchscript"), ("dcgan", "onnx"), ("mlp", "torchscript")])
def test_exported_file_draws_what_gan_sample_draws(runs, workdir, model, fmt):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
        pytest.importorskip("onnxscript")
    run = runs[model]
    out = workdir / ("g.pt" if fmt == "torchscript" else "g.onnx")
    proc = run_gan("export", f"ckpt={run}", f"format={fmt}", f"out={out}", cwd=workdir, check=True)
    assert f"wrote {out}" in proc.stdout
    labels = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5] if model == "dcgan" else []
    seed = 7
    expected = sample_array(workdir, run, seed=seed, **({"labels": labels} if labels else {"n": 16}))
    meta = _standalone(out, seed, labels, workdir / "standalone.npy")
    got = np.load(workdir / "standalone.npy")
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL[fmt])
    if model == "dcgan":
        assert meta | {"step": 0} == meta | {
            "z_size": 16,
            "num_classes": 10,
            "output_shape": [1, 28, 28],
            "output_range": [-1.0, 1.0],
            "dataset": "mnist5k",
            "model": "dcgan",
            "generator": "G_ema",
            "step": 0,
        }
    else:
        assert (meta["z_size"], meta["num_classes"], meta["output_shape"], meta["output_range"]) == (4, 0, [2], None)


@pytest.mark.slow  # the runs fixture trains two runs
def test_export_refusals_name_the_bad_value(runs, workdir):
    proc = run_gan("export", f"ckpt={runs['mlp']}", "format=keras", cwd=workdir)
    assert proc.returncode == 2 and "format" in proc.stderr and "onnx" in proc.stderr
    proc = run_gan("export", f"ckpt={runs['mlp']}", f"out={workdir / 'g.onnx'}", cwd=workdir)
    assert proc.returncode == 2 and "does not end in .pt" in proc.stderr and "Traceback" not in proc.stderr
    assert not (workdir / "g.onnx").exists()
    proc = run_gan("export", cwd=workdir)
    assert proc.returncode == 2 and "needs a checkpoint" in proc.stderr


class LenGenerator(torch.nn.Module):
    """A user's G that reads its batch size with len(z): tracing records the example's size as a constant."""

    z_dim = 4

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 6)

    def forward(self, z: torch.Tensor, y=None) -> torch.Tensor:
        return self.linear(z).view(len(z), 2, 3)


def _meta(z_size: int = 4, classes: int = 0) -> dict:
    return {"z_size": z_size, "num_classes": classes}


@pytest.mark.parametrize("fmt", ["torchscript", pytest.param("onnx", marks=pytest.mark.slow)])
def test_a_generator_tracing_cannot_record_is_refused_and_no_file_left(tmp_path, fmt):
    from gan_cli.export import export_generator

    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
        pytest.importorskip("onnxscript")
    out = tmp_path / f"g{'.pt' if fmt == 'torchscript' else '.onnx'}"
    with pytest.raises(GanError, match=r"model=mine's generator cannot be exported to .*z\.shape\[0\]") as err:
        export_generator(LenGenerator(), _meta(), fmt, out, "model=mine")
    assert "\n" not in str(err.value)
    assert not out.exists()


def test_onnx_without_its_packages_says_what_to_install(tmp_path, monkeypatch):
    from gan_cli.export import export_generator

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(GanError, match=r"pip install 'gan-cli\[export\]'.*format=torchscript"):
        export_generator(LenGenerator(), _meta(), "onnx", tmp_path / "g.onnx", "model=mine")


BUILT_IN = [
    ("dcgan", "concat"),
    ("dcgan", "cbn"),
    ("dcgan", "none"),
    ("mlp", "concat"),
    ("style", "concat"),
    ("lapgan", "concat"),
    ("progan", "projection"),
]


@pytest.mark.parametrize("name,cond", BUILT_IN)
def test_every_built_in_generator_exports_to_torchscript(tmp_path, name, cond):
    """Traced at one batch size, checked against G at another (export_generator raises when they differ)."""
    from gan_cli.export import export_generator
    from gan_cli.models import build_models, latent_layout, num_classes

    G, _ = build_models(model_cfg(name=name, cond=cond), MNIST)
    out = tmp_path / "g.pt"
    diff = export_generator(G.eval(), _meta(latent_layout(G).size, num_classes(G)), "torchscript", out, name)
    assert diff <= 1e-5 and out.is_file()


def test_progan_before_its_last_stage_exports_at_that_stage(tmp_path):
    from gan_cli.export import export_generator
    from gan_cli.models import build_models

    G, _ = build_models(model_cfg(name="progan", cond="projection"), MNIST)
    G.set_progress(1, 1.0)
    out = tmp_path / "g.pt"
    export_generator(G.eval(), _meta(8, 10), "torchscript", out, "progan", side=G.side)
    y = torch.jit.load(str(out))(torch.randn(5, 8), torch.arange(5))
    assert tuple(y.shape) == (5, 1, G.side, G.side) and G.side < 28
