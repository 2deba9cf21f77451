"""Benchmark: the digits training pipeline on the local stack vs the team stack, in one run.

Starts a team stack (the code of `make team-up`), makes two checkouts (`cvops init` and `cvops init --stack
team`), runs `cvops run training --overlay overlays/digits.yaml` once in each to import the data and warm
caches, then times the same command in turns (local, team, local, team, ...). The ratio is the median of
the rounds' team/local ratios; the per-step durations (ZenML's own) say where the extra time goes.

Usage: python bench/team.py [--rounds 2]
Writes bench/results/team.json and prints a markdown table.
"""

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cvops.env import go_offline
from cvops.stack.team import TeamStack

REPO = Path(__file__).resolve().parents[1]
SMALL = ["--overlay", str(REPO / "overlays" / "digits.yaml")]
STEP = re.compile(r"Step (\w+) has finished in (?:(\d+)m)?([\d.]+)s")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
go_offline()


def checkout(root: Path) -> Path:
    root.mkdir(parents=True)
    for name in ("params.yaml", "dvc.yaml"):
        (root / name).write_text((REPO / name).read_text())
    for command in (["init", "-q"], ["add", "."], ["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "b"]):
        subprocess.run(["git", *command], cwd=root, check=True)
    return root


def cvops(root: Path, env: dict[str, str], *args: str) -> tuple[float, str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("CVOPS_ROOT", "ZENML_CONFIG_PATH", "MLFLOW_TRACKING_URI")}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "cvops.cli", *args], cwd=root, env=clean | env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"cvops {' '.join(args)} failed in {root}:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start, ANSI.sub("", done.stdout + done.stderr)


def steps(output: str) -> dict[str, float]:
    return {name: int(minutes or 0) * 60 + float(seconds) for name, minutes, seconds in STEP.findall(output)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    rounds = parser.parse_args().rounds
    scratch = Path(tempfile.mkdtemp(prefix="cvops-bench-team-"))
    stack = TeamStack(scratch / ".team")
    started = time.perf_counter()
    team_env = stack.up("cvops-classifier", say=lambda line: print(f"  {line}", file=sys.stderr))
    up_s = time.perf_counter() - started
    try:
        setups = {"local": (checkout(scratch / "local"), {}), "team": (checkout(scratch / "team"), team_env)}
        for name, (root, env) in setups.items():
            cvops(root, env, "init", *(["--stack", "team"] if name == "team" else []))
            cvops(root, env, "run", "training", *SMALL)  # imports the data, warms caches
        walls: dict[str, list[float]] = {"local": [], "team": []}
        step_times: dict[str, list[dict[str, float]]] = {"local": [], "team": []}
        for _ in range(rounds):
            for name, (root, env) in setups.items():
                wall, output = cvops(root, env, "run", "training", *SMALL)
                walls[name].append(wall)
                step_times[name].append(steps(output))
    finally:
        stack.down(say=lambda line: None, drop=True)
    report(walls, step_times, up_s, rounds)


def report(
    walls: dict[str, list[float]], step_times: dict[str, list[dict[str, float]]], up_s: float, rounds: int
) -> None:
    ratio = statistics.median(t / local for t, local in zip(walls["team"], walls["local"], strict=True))
    median_steps = {
        name: {step: statistics.median(r[step] for r in runs) for step in runs[0]} for name, runs in step_times.items()
    }
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "rounds": rounds,
        "team_up_s": round(up_s, 1),
        "ratio_team_over_local": round(ratio, 2),
        "wall_s": {k: [round(v, 1) for v in vs] for k, vs in walls.items()},
        "steps_s": {k: {s: round(v, 2) for s, v in vs.items()} for k, vs in median_steps.items()},
    }
    out = REPO / "bench" / "results" / "team.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    local, team = median_steps["local"], median_steps["team"]
    print(f"digits training pipeline, local vs team stack, {rounds} rounds in turns ({result['machine']})\n")
    print("| | local | team | extra |\n|---|---|---|---|")
    wall_local, wall_team = statistics.median(walls["local"]), statistics.median(walls["team"])
    print(f"| `cvops run training` wall s | {wall_local:.1f} | {wall_team:.1f} | {wall_team - wall_local:+.1f} |")
    for step in sorted(team, key=lambda s: team[s] - local.get(s, 0), reverse=True):
        print(
            f"| step {step} s | {local.get(step, 0):.1f} | {team[step]:.1f} | {team[step] - local.get(step, 0):+.1f} |"
        )
    print(f"\nratio team/local (median of rounds): **x{ratio:.2f}** (goal <= 1.3); team stack up in {up_s:.0f} s")
    print(f"wrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
