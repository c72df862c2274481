"""`make gpu-check`: what only a GPU can tell, in one run of under 10 minutes; writes bench/RESULTS_gpu.md.

1. The default run: `gan train` with conf/train.yaml as it stands, its wall time end to end and of the loop alone.
2. Inception FID at 10k samples of that run's best checkpoint (last.pt when it keeps no best), when InceptionV3
   weights are on the machine (gan never downloads them).
3. DDP: the default model on all visible GPUs (NCCL, SyncBatchNorm: `dist.*` at auto) against one GPU.
4. Steps/s of gan's step with train.amp off/bf16/fp16 x channels_last on/off x compile on/off, each beside the
   canonical pytorch/examples loop (bench/loops.py), the two taking turns in chunks (bench/helpers.alternate).

On a machine without CUDA it says so in one line and exits 0: `cuda_missing` is the one place that decides.
Every section is a function of its case, device and step counts, so the tests run each on the CPU at smoke size
(`--cpu` runs them all there: a dry run of this script, no GPU figure). The budget guard: before anything runs,
the planned generator steps of all runs together must stay under MAX_STEPS; while it runs, a section (or a row of
the speed table) that the clock no longer allows is skipped, and the report says so.

    python -m bench.gpu_check                     # on a CUDA machine
    python -m bench.gpu_check --cpu --out /tmp/gpu_check_cpu.md   # every section on the CPU, at smoke size
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

import torch

from bench.distributed import timed_run
from bench.helpers import alternate, checkout_env, gan_train, machine
from bench.loops import Case, build_loop
from gan_cli.metrics.scorer import n_tag

HERE = Path(__file__).resolve().parent
LIMIT_S = 540.0  # the whole check, leaving a minute of the 10 for start-up and writing
# Generator steps of every run together. A CUDA GPU runs the default DCGAN at well over 50 steps/s, so the cap is
# at most 5 minutes of steps; compiling (tens of seconds per compiled row) and start-ups take the rest.
MAX_STEPS = 15_000
SPEED_CASE = Case("dcgan mnist5k 28x28x1 b256", ["model=dcgan", "dataset=mnist5k"], batch_size=256)
DDP_CASE = ["model=dcgan", "dataset=mnist5k", "train.batch_size=256"]
ON_OFF = ("off", "on")
# (amp, channels_last, compile), the compiled rows last: they cost the most, so the clock cuts them first
COMBOS = tuple(sorted(itertools.product(("off", "bf16", "fp16"), ON_OFF, ON_OFF), key=lambda c: c[2] == "on"))
ROW_NEED_S = {"off": 10.0, "on": 60.0}  # seconds a speed row needs, by compile: a row that does not fit is skipped


def cuda_missing() -> Optional[str]:
    """The one line this script prints where there is no GPU to measure, None where there is."""
    if torch.cuda.is_available():
        return None
    return (
        f"gpu-check: no CUDA device here (torch {torch.__version__}, built for CUDA {torch.version.cuda or 'none'}); "
        "nothing measured, bench/RESULTS_gpu.md left as it was."
    )


@dataclass
class Budget:
    """The clock of the whole check: a section asks whether the seconds it needs are left before it starts."""

    seconds: float
    started: float = field(default_factory=time.monotonic)

    def left(self) -> float:
        return self.seconds - (time.monotonic() - self.started)

    def allows(self, need: float) -> bool:
        return self.left() >= need

    def skipped(self, need: float) -> str:
        return f"skipped: {max(self.left(), 0):.0f} s of the {self.seconds:.0f} s budget left, {need:.0f} s needed"


@dataclass(frozen=True)
class Plan:
    """What the check will run, counted before it starts: runs x generator steps."""

    default_steps: int
    combos: tuple[tuple[str, str, str], ...]
    rounds: int
    chunk: int
    warmup: int
    ddp_steps: int
    worlds: tuple[int, ...]

    def steps(self) -> int:
        speed = len(self.combos) * 2 * (self.warmup + self.rounds * self.chunk)  # gan's loop and the canonical one
        ddp = len(self.worlds) * self.ddp_steps if len(self.worlds) > 1 else 0
        return self.default_steps + speed + ddp

    def check(self, cap: int = MAX_STEPS) -> None:
        if self.steps() > cap:
            raise SystemExit(
                f"gpu-check plans {self.steps():,} generator steps (the default run {self.default_steps:,}, "
                f"{len(self.combos)} speed rows x 2 loops x {self.warmup + self.rounds * self.chunk}, DDP "
                f"{len(self.worlds)} x {self.ddp_steps:,}), more than the {cap:,} that fit in 10 minutes; "
                "lower --rounds, --chunk or --ddp-steps."
            )


# ---------------------------------------------------------------------------------------------
# the sections
# ---------------------------------------------------------------------------------------------
def default_run(extra: list[str], workdir: Path, budget: Budget) -> dict:
    """The default `gan train` (plus only `extra`), timed end to end and by its loop's own clock."""
    trained = gan_train(extra, workdir / "default", workdir, timeout=max(budget.left(), 1.0))
    return {
        "args": " ".join(extra) or "(none)",
        "steps": trained.steps,
        "loop_s": trained.loop_seconds,
        "wall_s": trained.wall_seconds,
        "run": str(trained.run),
    }


def inception_present() -> Optional[Path]:
    from gan_cli.metrics.backbones import inception_candidates

    return next((p for p in inception_candidates(None) if p.is_file()), None)


def fid_of_run(run: Path, n: int, backbone: str, budget: Budget) -> dict:
    """FID of a run's best checkpoint (last.pt when it keeps none) by `gan eval`, as a user would score it."""
    best = run / "checkpoints" / "best.pt"
    ckpt = best if best.is_file() else run / "checkpoints" / "last.pt"
    command = [
        sys.executable,
        "-m",
        "gan_cli",
        "eval",
        f"ckpt={ckpt}",
        "metrics=[fid]",
        f"n={n}",
        f"backbone={backbone}",
    ]
    t = time.perf_counter()
    proc = subprocess.run(command, env=checkout_env(), capture_output=True, text=True, timeout=max(budget.left(), 1.0))
    if proc.returncode != 0:
        return {"checkpoint": str(ckpt), "note": f"gan eval failed ({proc.returncode}): {proc.stderr.strip()[-300:]}"}
    name = f"fid{n_tag(n)}_{backbone}"
    value = json.loads((run / "metrics.json").read_text())["scores"][name]
    return {"checkpoint": str(ckpt), "metric": name, "value": float(value), "seconds": time.perf_counter() - t}


def ddp_rows(args: list[str], worlds: tuple[int, ...], steps: int, workdir: Path) -> list[dict]:
    """images/s of one run on each world size (gan's own launcher: NCCL and SyncBatchNorm on GPUs at `auto`)."""
    batch = int(next(a for a in args if a.startswith("train.batch_size=")).split("=")[1])
    rows = []
    for world in worlds:
        trained = timed_run(args, world, steps, workdir)
        line = next((x for x in trained.log.splitlines() if "distributed: " in x), "")
        rows.append(
            {
                "world": world,
                "ips": steps * batch / trained.loop_seconds,
                "setup": line.split("distributed: ", 1)[1].strip() if line else "one process",
            }
        )
    for row in rows:
        row["efficiency"] = row["ips"] / (row["world"] * rows[0]["ips"])
    return rows


def speed_rows(case: Case, combos, rounds: int, chunk: int, warmup: int, budget: Budget) -> list[dict]:
    """Steps/s of gan's step for each (amp, channels_last, compile), each timed in turns with the canonical loop
    (built once, on the same initial weights and data); rows the clock no longer allows are marked skipped."""
    baseline = build_loop(case, "baseline")
    rows = []
    for amp, channels_last, compile_ in combos:
        row = {"amp": amp, "channels_last": channels_last, "compile": compile_}
        need = ROW_NEED_S[compile_]
        if not budget.allows(need):
            rows.append(row | {"note": budget.skipped(need)})
            continue
        if compile_ == "on":
            torch._dynamo.reset()  # each row compiles afresh, never against the recompile limit of the one before
        speed = [f"train.amp={amp}", f"train.channels_last={channels_last}", f"train.compile={compile_}"]
        gan = build_loop(replace(case, speed=speed), "gan")
        seconds, cuda_peak = alternate({"gan": gan, "baseline": baseline}, rounds, chunk, warmup)
        stats = gan.step()
        row |= {
            "plan": gan.plan.describe(),
            "gan_sps": rounds * chunk / seconds["gan"],
            "base_sps": rounds * chunk / seconds["baseline"],
            "finite": all(bool(torch.isfinite(v).all()) for v in stats.values()),
            "note": f"loss scale {gan.amp.scalers['D'].get_scale():g}" if amp == "fp16" else "",
        }
        if gan.device.type == "cuda":
            row["cuda_mib"] = cuda_peak["gan"] / 2**20
        rows.append(row)
        del gan
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return rows


# ---------------------------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------------------------
SECTIONS = ("default", "fid", "ddp", "speed")
NOT_RUN = "Not run (`--only` left it out)."


def _default_lines(d: dict) -> list[str]:
    return [
        "| overrides | steps | training loop (s) | steps/s | end to end (s) |",
        "|---|---:|---:|---:|---:|",
        f"| {d['args']} | {d['steps']:,} | {d['loop_s']:.1f} | {d['steps'] / d['loop_s']:,.1f} | {d['wall_s']:.1f} |",
    ]


def _fid_lines(fid: dict) -> list[str]:
    if "value" not in fid:
        return [fid["note"]]
    return [f"{fid['metric']} = **{fid['value']:.2f}** (`{fid['checkpoint']}`, scored in {fid['seconds']:.0f} s)."]


def _ddp_lines(ddp) -> list[str]:
    if isinstance(ddp, str):
        return [ddp]
    head = ["| processes | set-up (train.log) | images/s | efficiency |", "|---:|---|---:|---:|"]
    return head + [f"| {r['world']} | {r['setup']} | {r['ips']:,.0f} | {r['efficiency']:.0%} |" for r in ddp]


def _speed_lines(speed: list[dict]) -> list[str]:
    lines = [
        "gan's step with each `train.amp`, `train.channels_last`, `train.compile`, beside the canonical loop "
        "(bench/loops.py), the two taking turns in chunks; CUDA MiB: gan's max allocated.",
        "",
        "| amp | channels_last | compile | gan steps/s | canonical steps/s | gan / canonical | CUDA MiB | note |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for r in speed:
        if "gan_sps" not in r:
            lines.append(f"| {r['amp']} | {r['channels_last']} | {r['compile']} | | | | | {r['note']} |")
            continue
        note = "; ".join(x for x in (r["note"], "" if r["finite"] else "non-finite statistics") if x)
        mib = f"{r['cuda_mib']:,.0f}" if "cuda_mib" in r else "n/a"
        lines.append(
            f"| {r['amp']} | {r['channels_last']} | {r['compile']} | {r['gan_sps']:,.1f} | {r['base_sps']:,.1f} | "
            f"**{r['gan_sps'] / r['base_sps']:.2f}x** | {mib} | {note} |"
        )
    return lines


def report(results: dict, case: str, command: str, started: str, budget: Budget) -> list[str]:
    titles = {
        "default": ("The default run", _default_lines),
        "fid": ("FID of the default run", _fid_lines),
        "ddp": ("DDP: all visible GPUs against one", _ddp_lines),
        "speed": (f"Steps/s by speed path: {case}", _speed_lines),
    }
    lines = [
        "# GPU check",
        "",
        f"Written by `{command}` on {started}, in {budget.seconds - budget.left():.0f} s of its "
        f"{budget.seconds:.0f} s budget. Machine: {machine()}.",
    ]
    for key, (title, render) in titles.items():
        lines += ["", f"## {title}", "", *(render(results[key]) if key in results else [NOT_RUN])]
    return lines


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpu", action="store_true", help="run every section on the CPU at smoke size (a dry run)")
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="the sections to run")
    p.add_argument("--out", type=Path, default=HERE / "RESULTS_gpu.md")
    p.add_argument("--rounds", type=int, default=8, help="turns of gan's loop and the canonical one per speed row")
    p.add_argument("--chunk", type=int, default=5, help="steps per loop per turn")
    p.add_argument("--ddp-steps", type=int, default=1000, help="generator steps of each DDP run")
    p.add_argument("--fid-run", type=Path, default=None, help="score this run directory instead of the default run")
    args = p.parse_args(argv)
    missing = cuda_missing()
    if missing and not args.cpu:
        print(missing)
        return 0
    if args.cpu and args.out == HERE / "RESULTS_gpu.md":
        p.error("--cpu measures nothing worth keeping: name another file with --out")
    if "fid" in args.only and "default" not in args.only and args.fid_run is None:
        p.error("--only fid scores the default run: add `default`, or name a run with --fid-run")
    return run_check(args, argv if argv is not None else sys.argv[1:])


def run_check(args: argparse.Namespace, argv: list[str]) -> int:
    from bench.quality import compose_train

    smoke = ["+debug=tiny", "train.steps=4"] if args.cpu else []
    case = replace(SPEED_CASE, overrides=[*SPEED_CASE.overrides, *smoke[:1]], batch_size=16 if args.cpu else 256)
    combos = tuple(c for c in COMBOS if c[2] == "off" and c[1] == "off") if args.cpu else COMBOS
    rounds, chunk, warmup = (1, 2, 1) if args.cpu else (args.rounds, args.chunk, 3)
    gpus = torch.cuda.device_count()
    worlds = (1, 2) if args.cpu else (1, gpus)
    ddp_steps, fid_n, backbone = (3, 200, "lenet") if args.cpu else (args.ddp_steps, 10_000, "inception")
    ddp_case = [*DDP_CASE[:2], "+debug=tiny", "train.batch_size=16"] if args.cpu else DDP_CASE
    only = set(args.only)
    plan = Plan(
        compose_train(smoke).train.steps if "default" in only else 0,
        combos if "speed" in only else (),
        rounds,
        chunk,
        warmup,
        ddp_steps,
        worlds if "ddp" in only else (),
    )
    plan.check()
    budget, started = Budget(LIMIT_S), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"gpu-check on {machine()}: {plan.steps():,} generator steps planned, {LIMIT_S:.0f} s budget", flush=True)
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if "default" in only:
            results["default"] = default_run(smoke, workdir, budget)
            print("default", json.dumps(results["default"]), flush=True)
        if "fid" in only:
            if backbone == "inception" and inception_present() is None:
                results["fid"] = {"note": "Skipped: no InceptionV3 weights on this machine (see docs/scores.md)."}
            else:
                results["fid"] = fid_of_run(args.fid_run or workdir / "default", fid_n, backbone, budget)
            print("fid", json.dumps(results["fid"]), flush=True)
        if "ddp" in only:
            two = worlds[-1] >= 2
            ddp = ddp_rows(ddp_case, worlds, ddp_steps, workdir) if two else None
            results["ddp"] = ddp or f"Skipped: {gpus} GPU visible, DDP needs two or more."
            print("ddp", json.dumps(results["ddp"]), flush=True)
        if "speed" in only:
            results["speed"] = speed_rows(case, combos, rounds, chunk, warmup, budget)
            print("speed", json.dumps(results["speed"]), flush=True)
    name = case.name + (" (CPU smoke)" if args.cpu else "")
    lines = report(results, name, "python -m bench.gpu_check " + " ".join(argv), started, budget)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
