"""bench/quality.py, `make bench`'s time-to-quality section, at smoke size: both loops train against
the clock, are scored by the same protocol, and the report carries the curves and the ratio."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench.quality import Curve, Point, ratio, report, time_to_quality

# tiny networks on 256 digits: steps take milliseconds, so a budget of 1.5 s of training gives a few scores
SMALL = [
    "model.g_width=8",
    "model.d_width=8",
    "model.z_dim=16",
    "train.batch_size=16",
    "dataset.limit=256",
    "train.log_every=10",
    "train.num_workers=0",
]


@pytest.mark.slow
def test_time_to_quality_races_gan_default_run_and_the_canonical_loop_against_the_clock(
    tmp_path: Path, lenet_cache: Path
) -> None:
    budget, every = 1.5, 10
    result = time_to_quality(
        budget=budget,
        every=every,
        n=200,
        threshold=1e9,
        extra=SMALL,
        workers=0,
        threads=1,
        workdir=tmp_path,
        log=lambda *a: None,
    )
    assert result["metric"] == "fid200_lenet"  # the name carries the protocol's sample count
    for name in ("gan", "gan_unlabelled", "canonical"):
        curve = result[name]
        points = curve["points"]
        assert len(points) >= 2, curve
        seconds = [p["seconds"] for p in points]
        assert all(a < b for a, b in zip(seconds, seconds[1:])) and seconds[0] > 0  # training time only moves on
        assert [p["step"] for p in points] == [every * (i + 1) for i in range(len(points))]
        assert all(math.isfinite(p["score"]) and p["score"] > 0 for p in points)
        # both stop at the first score past the budget (gan by SIGINT, long before its default train.steps)
        assert seconds[-1] >= budget and all(s < budget for s in seconds[:-1]), curve
        assert curve["ended"].startswith("stopped at the budget"), curve
    # the threshold is met at the first score by both: the ratio is that of their first scores' times
    assert result["ratio"] == pytest.approx(
        result["canonical"]["points"][0]["seconds"] / result["gan"]["points"][0]["seconds"]
    )
    assert result["ratio_gan_unlabelled"] == pytest.approx(
        result["canonical"]["points"][0]["seconds"] / result["gan_unlabelled"]["points"][0]["seconds"]
    )
    assert "dataset.labels=clusters" in result["gan_unlabelled"]["settings"]

    # gan's clock is metrics.jsonl's train_seconds, written by `gan train eval.every=...` itself
    records = [json.loads(line) for line in (tmp_path / "gan_run" / "metrics.jsonl").read_text().splitlines()]
    assert records and all({"step", "fid200_lenet", "seconds", "train_seconds"} <= set(r) for r in records)
    assert all(r["train_seconds"] > 0 for r in records)

    lines = report(result, "python -m bench.bench --quality", "test machine")
    text = "\n".join(lines)
    assert lines[0] == "## Time to quality"
    assert "| gan |" in text and "| gan_unlabelled |" in text and "| canonical |" in text
    assert f"canonical / gan time to fid200_lenet <= 1e+09: {result['ratio']:.2f}x" in text
    assert f"canonical / gan_unlabelled time to fid200_lenet <= 1e+09: {result['ratio_gan_unlabelled']:.2f}x" in text


def test_ratio_is_a_bound_when_only_one_loop_reaches_the_threshold() -> None:
    fast = Curve("gan", "", [Point(10.0, 100, 50.0), Point(20.0, 200, 25.0), Point(30.0, 300, 20.0)])
    slow = Curve("canonical", "", [Point(15.0, 100, 60.0), Point(30.0, 200, 40.0), Point(45.0, 300, 29.0)])
    never = Curve("canonical", "", [Point(15.0, 100, 60.0), Point(80.0, 200, 40.0)])
    assert ratio(fast, slow, 30.0)["ratio"] == pytest.approx(45.0 / 20.0)
    assert ratio(fast, never, 30.0)["ratio_text"].startswith("> 4.00x")
    assert ratio(never, fast, 30.0)["ratio_text"].startswith("< 0.25x")
    assert fast.at(25.0) == Point(20.0, 200, 25.0) and slow.at(10.0) is None
