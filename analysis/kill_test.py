"""Kill `taskgroup run` at random moments and check that rerunning it loses nothing (issue 21).

The tiny recipe of the tests (tests/recipes.py) runs in a work folder. An uninterrupted run of
it is the reference. Then, episode after episode (a fresh run directory each), the same command
starts and is killed with SIGKILL (its whole process group, the ranks of a `--nproc 2` run
included) at a moment drawn over every stage, and is started again after each kill until one
attempt finishes by itself. After every kill every file a reader opens is checked whole
(JSON parses strictly, checkpoints load with ``weights_only=True``, PNG and HTML end where they
should, every TensorBoard record's CRC holds, at most the one line being written is torn in
``log.jsonl``); after each episode its ``results.json`` must equal the reference's (timing
fields aside), its affinity and groups too, and no temporary or lock file may remain.

Kills are of two kinds:
- ``external``: a stage is drawn (start-up, affinity, group, train, report), the process is
  watched until it enters that stage (what it prints, unbuffered) and killed after a random
  part of that stage's duration in the reference run;
- ``in-write`` (one process only): the command runs with ``os.write`` / ``os.replace`` patched
  to kill the process itself in the middle of its k-th write of a file kind (a checkpoint, the
  weights, a result, the manifest, a plot, the report, the event log, a TensorBoard file), half
  the bytes written, or just before the rename that would publish it.

    nice -n 10 python analysis/kill_test.py --kills 50      # the study (minutes)
    python analysis/kill_test.py --kills 5 --no-save         # a quick look

Each attempt is a fork of the study's process (taskgroup imported once, so that a kill costs
the run's time rather than torch's import), in a process group of its own; ``--subprocess``
starts fresh interpreters instead. The ranks of a ``--nproc 2`` attempt are spawned afresh by
torch's launcher either way.

Writes analysis/results/kill_test.txt (the table) and kill_test.json (every kill).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from taskgroup.rundir import LOCK  # noqa: E402
from taskgroup.storage import TEMPORARY, read_json  # noqa: E402
from taskgroup.training.checkpoint import load_checkpoint  # noqa: E402
from tests.recipes import tiny  # noqa: E402

RESULTS = ROOT / "analysis" / "results"
STAGES = ("startup", "affinity", "group", "train", "report")
# what the command prints when a stage ends: the stage after it has begun
STAGE_ENDS = {
    "affinity": ("Top 5 hurting pairs", "affinity: reusing"),
    "group": ("group(s) for",),
    "train": ("Δm vs single-task",),
    "report": ("report.html",),
}
# file kinds an in-write kill aims at (a substring of the written file's name)
TARGETS = (
    "checkpoint.pt",
    "model.pt",
    "result.json",
    "results.json",
    "manifest.json",
    "affinity.json",
    "groups.json",
    ".png",
    "report.html",
    "log.jsonl",
    "tfevents",
)
PHASES = ("mid-write", "before-rename")


@dataclass
class Kill:
    """One kill: where it landed and what the scan after it found."""

    episode: int
    attempt: int
    mode: str  # "1 process" or "--nproc 2"
    kind: str  # "external" or "in-write"
    aimed: str  # the stage drawn, or "<target> <phase> #k" for an in-write kill
    stage: str  # the stage it landed in
    after_s: float  # seconds after the attempt started
    problems: list[str] = field(default_factory=list)  # truncated or unreadable files
    torn_log_lines: int = 0
    cut_tensorboard_records: int = 0


@dataclass
class Episode:
    episode: int
    mode: str
    kills: int
    attempts: int
    equal: bool
    leftovers: list[str]
    problems: list[str]


# ---------------------------------------------------------------- scanning a run directory


def scan(run_dir: Path) -> tuple[list[str], int, int]:
    """Every file a reader opens, checked whole: ``(problems, torn log lines, cut TensorBoard
    records)``. Temporary files and the lock are not read by anyone and are skipped."""
    problems, torn, cut = [], 0, 0
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file()):
        if path.name.endswith(TEMPORARY) or path.name == LOCK:
            continue
        try:
            if path.name == "log.jsonl":
                torn += _torn_lines(path)
            elif path.suffix == ".json":
                read_json(path)
            elif path.suffix == ".pt":
                load_checkpoint(path)
            elif path.suffix == ".png":
                _check_png(path)
            elif path.suffix == ".html":
                if not path.read_text(encoding="utf-8").rstrip().endswith("</html>"):
                    raise ValueError(f"{path}: truncated page")
            elif "tfevents" in path.name:
                cut += _tensorboard_cut(path)
        except ValueError as e:
            problems.append(str(e))
    return problems, torn, cut


def _torn_lines(path: Path) -> int:
    torn = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            json.loads(line)
        except json.JSONDecodeError:
            torn += 1
    return torn


def _check_png(path: Path) -> None:
    data = path.read_bytes()
    if not (data.startswith(b"\x89PNG\r\n\x1a\n") and data.endswith(b"IEND\xaeB`\x82")):
        raise ValueError(f"{path}: truncated PNG")


def _tensorboard_cut(path: Path) -> int:
    """Check every record's CRCs; 1 when the last record is cut short (a kill mid-write,
    which TensorBoard's reader tolerates), else 0; ``ValueError`` on a bad CRC."""
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    data, offset = path.read_bytes(), 0
    while offset < len(data):
        if offset + 12 > len(data):
            return 1
        header = data[offset : offset + 8]
        (length,) = struct.unpack("<Q", header)
        if struct.unpack("<I", data[offset + 8 : offset + 12])[0] != masked_crc32c(header):
            raise ValueError(f"{path}: a record's header fails its CRC")
        end = offset + 12 + length + 4
        if end > len(data):
            return 1
        body = data[offset + 12 : offset + 12 + length]
        if struct.unpack("<I", data[end - 4 : end])[0] != masked_crc32c(body):
            raise ValueError(f"{path}: a record fails its CRC")
        offset = end
    return 0


def leftovers(run_dir: Path) -> list[str]:
    """Temporary files and a lock file, which a finished run must not leave."""
    return sorted(
        str(p.relative_to(run_dir))
        for p in run_dir.rglob("*")
        if p.name.endswith(TEMPORARY) or p.name == LOCK
    )


def comparable(run_dir: Path) -> dict:
    """What an interrupted run must reproduce: results.json without its timing fields, the
    affinity matrix and the groups."""

    def untimed(value):
        if isinstance(value, dict):
            return {k: untimed(v) for k, v in value.items() if k != "seconds"}
        if isinstance(value, list):
            return [untimed(v) for v in value]
        return value

    affinity = read_json(run_dir / "affinity.json")
    return {
        "results": untimed(read_json(run_dir / "results.json")),
        "affinity": affinity["values"],
        "groups": read_json(run_dir / "groups.json")["groups"],
    }


# ---------------------------------------------------------------- starting and killing


def command(recipe: Path, run_dir: Path, nproc: int) -> list[str]:
    """The taskgroup command line of every attempt (one thread: the study shares its cores)."""
    argv = ["--threads", "1", "run", str(recipe), "--out", str(run_dir), "--no-progress"]
    return [*argv, "--nproc", "2"] if nproc > 1 else argv


class Attempt:
    """One attempt of the command in its own process group, its output in ``log``."""

    def __init__(self, argv: list[str], log: Path, die_at: str | None, fork: bool) -> None:
        self.log, self.started = log, time.monotonic()
        if fork:  # the fast sample of the tests: taskgroup is imported already
            self.pid = _fork(argv, log, die_at)
            self.process = None
        else:
            extra = [] if die_at is None else ["--die-at", die_at]
            env = os.environ | {
                "PYTHONUNBUFFERED": "1",
                "OMP_NUM_THREADS": "1",
                "PYTHONPATH": str(ROOT),
            }
            with open(log, "w") as out:
                self.process = subprocess.Popen(
                    [sys.executable, __file__, "--child", *extra, "--", *argv],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env=env,
                    cwd=ROOT,
                )
            self.pid = self.process.pid
        self.code: int | None = None

    def poll(self) -> int | None:
        if self.code is None:
            if self.process is not None:
                self.code = self.process.poll()
            else:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid:
                    self.code = os.waitstatus_to_exitcode(status)
        return self.code

    def wait(self) -> int:
        while self.poll() is None:
            time.sleep(0.02)
        return self.code

    def kill(self) -> None:
        """SIGKILL the whole process group (the launcher and its ranks alike)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.wait()
        _wait_group_gone(self.pid)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stage(self, run_dir: Path) -> str:
        """The stage the attempt is in, from what it printed and whether it holds the lock."""
        printed = self.output()
        for stage in ("report", "train", "group", "affinity"):
            if any(marker in printed for marker in STAGE_ENDS[stage]):
                return {"affinity": "group", "group": "train", "train": "report"}.get(stage, "done")
        return "affinity" if _lock_holder_alive(run_dir) else "startup"


def _wait_group_gone(pgid: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)


def _lock_holder_alive(run_dir: Path) -> bool:
    try:
        pid = json.loads((run_dir / LOCK).read_text())["pid"]
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True


def _fork(argv: list[str], log: Path, die_at: str | None) -> int:
    pid = os.fork()
    if pid:
        with contextlib.suppress(OSError):  # here as well: a kill right away finds the group
            os.setpgid(pid, pid)
        return pid
    code = 1
    try:  # the child: its own process group, its output line-buffered into the log
        os.setpgid(0, 0)
        out = open(log, "w", buffering=1)  # noqa: SIM115 - the process ends with it
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
        sys.stdout = sys.stderr = out
        code = child(argv, die_at)
    finally:
        os._exit(code)


def child(argv: list[str], die_at: str | None) -> int:
    """Run the command line ``argv`` in this process, killing itself where ``die_at``
    (``"<target>:<phase>:<k>"``) says."""
    if die_at is not None:
        target, phase, k = die_at.split(":")
        _die_in_write(target, phase, int(k))
    from taskgroup.cli import main

    return main(argv)


def _die_in_write(target: str, phase: str, k: int) -> None:
    """Patch ``os.write`` (phase ``mid-write``: write half the bytes, then die) or
    ``os.replace`` (``before-rename``) to SIGKILL this process at its k-th write of a file
    whose name holds ``target``."""
    seen = [0]

    def due(name: str) -> bool:
        if target in os.path.basename(name):
            seen[0] += 1
        return seen[0] == k and target in os.path.basename(name)

    if phase == "mid-write":
        real_write = os.write

        def write(fd, data):
            try:
                name = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                name = ""
            if due(name):
                real_write(fd, bytes(data)[: max(1, len(data) // 2)])
                os.kill(os.getpid(), signal.SIGKILL)
            return real_write(fd, data)

        os.write = write
    else:
        real_replace = os.replace

        def replace(src, dst, **kwargs):
            if due(str(dst)):
                os.kill(os.getpid(), signal.SIGKILL)
            return real_replace(src, dst, **kwargs)

        os.replace = replace


# ---------------------------------------------------------------- the study


@dataclass
class Plan:
    """Where to kill one attempt: an external kill in a stage, or in a write."""

    kind: str
    aimed: str
    die_at: str | None = None
    stage: str | None = None
    fraction: float = 0.0


def reference(work: Path, recipe: Path, nproc: int, fork: bool) -> tuple[dict, dict[str, float]]:
    """The uninterrupted run: what it produced and how long each stage took (seconds)."""
    run_dir = work / f"reference-{nproc}"
    attempt = Attempt(command(recipe, run_dir, nproc), work / f"reference-{nproc}.log", None, fork)
    stages, seen = {}, "startup"
    while attempt.poll() is None:
        now = attempt.stage(run_dir)
        if now != seen:
            stages[seen] = time.monotonic() - attempt.started - sum(stages.values())
            seen = now
        time.sleep(0.02)
    stages[seen] = time.monotonic() - attempt.started - sum(stages.values())
    if attempt.code != 0:
        raise SystemExit(f"the reference run failed:\n{attempt.output()}")
    return comparable(run_dir), {s: stages.get(s, 0.1) for s in STAGES}


def plan(
    rng: random.Random,
    nproc: int,
    in_write_share: float,
    counts: dict[str, int],
    remaining: list[str],
) -> Plan:
    """Where the next attempt dies: in a write (one process only), or at a moment of a stage
    drawn among start-up and the stages this run directory has not finished."""
    if nproc == 1 and rng.random() < in_write_share:
        target = rng.choice([t for t in TARGETS if counts.get(t, 1) > 0])
        phase = rng.choice(PHASES if target not in ("log.jsonl", "tfevents") else PHASES[:1])
        k = rng.randint(1, max(1, counts.get(target, 3)))
        return Plan("in-write", f"{target} {phase} #{k}", die_at=f"{target}:{phase}:{k}")
    stage = rng.choice(remaining)
    return Plan("external", stage, stage=stage, fraction=rng.random())


def unfinished(run_dir: Path) -> list[str]:
    """Start-up and the stages that ``run_dir``'s manifest does not record as finished."""
    try:
        recorded = read_json(run_dir / "manifest.json").get("stages", {})
    except ValueError:
        recorded = {}
    return [s for s in STAGES if s == "startup" or s not in recorded]


def attempt_once(
    argv: list[str], run_dir: Path, log: Path, the_plan: Plan, durations: dict, fork: bool
) -> tuple[Attempt, str | None]:
    """Start one attempt and carry out ``the_plan``; ``(attempt, stage killed in)``, the stage
    ``None`` when the attempt ended by itself first."""
    attempt = Attempt(argv, log, the_plan.die_at, fork)
    if the_plan.kind == "in-write":
        code = attempt.wait()
        if code == -signal.SIGKILL:
            return attempt, _stage_of_write(the_plan.die_at, attempt.stage(run_dir))
        return attempt, None
    order = STAGES.index(the_plan.stage)
    while attempt.poll() is None and STAGES.index(_known(attempt.stage(run_dir))) < order:
        time.sleep(0.01)
    deadline = time.monotonic() + the_plan.fraction * durations[the_plan.stage]
    while attempt.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    if attempt.poll() is not None:
        return attempt, None
    stage = attempt.stage(run_dir)
    attempt.kill()
    return attempt, stage


def _known(stage: str) -> str:
    return "report" if stage == "done" else stage


def _stage_of_write(die_at: str, printed_stage: str) -> str:
    target = die_at.split(":")[0]
    by_file = {"affinity.json": "affinity", "groups.json": "group", "results.json": "train"}
    by_file |= {"checkpoint.pt": "train", "model.pt": "train", "result.json": "train"}
    return by_file.get(target, "report" if target == "report.html" else _known(printed_stage))


def episode(
    index: int,
    work: Path,
    recipe: Path,
    nproc: int,
    rng: random.Random,
    expected: dict,
    durations: dict,
    options: argparse.Namespace,
    say: Callable[[str], None],
) -> tuple[Episode, list[Kill]]:
    """Kill and rerun one fresh run directory until an attempt finishes by itself."""
    run_dir = work / f"episode{index:03d}"
    mode = "--nproc 2" if nproc > 1 else "1 process"
    argv = command(recipe, run_dir, nproc)
    kills, attempt_no, problems = [], 0, []
    while True:
        attempt_no += 1
        budget_left = options.kills - options.done - len(kills)
        the_plan = plan(rng, nproc, options.in_write_share, options.counts, unfinished(run_dir))
        if budget_left <= 0 or attempt_no >= options.max_attempts:
            the_plan = Plan("none", "to the end", stage="report", fraction=1e9)
        log = work / f"episode{index:03d}.{attempt_no}.log"
        attempt, stage = attempt_once(argv, run_dir, log, the_plan, durations, options.fork)
        if stage is None:
            break
        found, torn, cut = scan(run_dir)
        kill = Kill(index, attempt_no, mode, the_plan.kind, the_plan.aimed, stage, 0.0, found)
        kill.after_s = round(time.monotonic() - attempt.started, 2)
        kill.torn_log_lines, kill.cut_tensorboard_records = torn, cut
        kills.append(kill)
        say(
            f"  kill {options.done + len(kills)}: episode {index} attempt {attempt_no} "
            f"({mode}, {the_plan.kind} {the_plan.aimed}) in {stage} after {kill.after_s} s"
            + (f"; PROBLEMS {found}" if found else "")
        )
    if attempt.code != 0:
        problems.append(f"the last attempt exited {attempt.code}: {attempt.output()[-400:]}")
    try:
        equal = comparable(run_dir) == expected
    except (ValueError, KeyError) as e:
        equal, problems = False, [*problems, str(e)]
    problems += scan(run_dir)[0]
    result = Episode(index, mode, len(kills), attempt_no, equal, leftovers(run_dir), problems)
    return result, kills


def study(options: argparse.Namespace, say: Callable[[str], None] = print) -> dict:
    """Run the study; the summary (also what gets saved)."""
    rng = random.Random(options.seed)
    if options.fork:  # what every attempt imports, imported once before the forks
        import torch

        import taskgroup.cli
        import taskgroup.pipeline  # noqa: F401

        torch.set_num_threads(1)
    work = Path(options.work or tempfile.mkdtemp(prefix="kill_test."))
    work.mkdir(parents=True, exist_ok=True)
    recipe = work / "tiny.toml"
    recipe.write_text(tiny(seed=1))
    started = time.monotonic()
    expected = {n: reference(work, recipe, n, options.fork) for n in options.modes}
    say(f"references: {', '.join(f'{n} process(es) {d}' for n, (_, d) in expected.items())}")
    options.counts = count_writes(work / f"reference-{options.modes[0]}")
    options.done, episodes, kills = 0, [], []
    index = 0
    while options.done < options.kills:
        index += 1
        nproc = 2 if 2 in options.modes and index % options.nproc_every == 0 else 1
        if options.modes == [2]:
            nproc = 2
        reference_result, durations = expected[nproc]
        ep, ep_kills = episode(
            index, work, recipe, nproc, rng, reference_result, durations, options, say
        )
        episodes.append(ep)
        kills += ep_kills
        options.done += len(ep_kills)
        if getattr(options, "save", None):  # what is done so far, should the study be cut short
            options.save(summarise(episodes, kills, time.monotonic() - started, options))
        say(
            f"episode {index} ({ep.mode}): {ep.kills} kill(s), {ep.attempts} attempts, results "
            f"{'equal' if ep.equal else 'DIFFER'}"
            + (f", left {ep.leftovers}" if ep.leftovers else "")
            + (f", PROBLEMS {ep.problems}" if ep.problems else "")
        )
    return summarise(episodes, kills, time.monotonic() - started, options)


def count_writes(run_dir: Path) -> dict[str, int]:
    """Roughly how many writes of each target kind an uninterrupted run makes, from its run
    directory (what an in-write kill draws its k from): one per file, a checkpoint two (it is
    rewritten at every evaluation), the event log one per line."""
    counts = {t: sum(t in p.name for p in run_dir.rglob("*")) for t in TARGETS}
    counts["checkpoint.pt"] *= 2
    counts["log.jsonl"] = len((run_dir / "log.jsonl").read_text().splitlines())
    return counts


def summarise(episodes: list[Episode], kills: list[Kill], seconds: float, options) -> dict:
    survived_episodes = [e for e in episodes if e.equal and not e.leftovers and not e.problems]
    clean = {id(k) for k in kills if not k.problems}
    survived = sum(
        1 for e in survived_episodes for k in kills if k.episode == e.episode and id(k) in clean
    )
    return {
        "kills": len(kills),
        "survived": survived,
        "episodes": len(episodes),
        "episodes_equal": sum(e.equal for e in episodes),
        "by_stage": dict(Counter(k.stage for k in kills)),
        "by_kind": dict(Counter(k.kind for k in kills)),
        "by_mode": dict(Counter(k.mode for k in kills)),
        "in_write_targets": dict(
            Counter(k.aimed.split()[0] for k in kills if k.kind == "in-write")
        ),
        "torn_log_lines": sum(k.torn_log_lines for k in kills),
        "cut_tensorboard_records": sum(k.cut_tensorboard_records for k in kills),
        "truncated_files_seen": sum(len(k.problems) for k in kills),
        "leftovers": sum(len(e.leftovers) for e in episodes),
        "seconds": round(seconds, 1),
        "seed": options.seed,
        "episodes_detail": [asdict(e) for e in episodes],
        "kills_detail": [asdict(k) for k in kills],
    }


def table(summary: dict) -> str:
    lines = [
        f"kill test: {summary['survived']} of {summary['kills']} SIGKILLs survived "
        f"({summary['episodes']} run directories, {summary['episodes_equal']} with results "
        f"equal to the uninterrupted run's), seed {summary['seed']}, {summary['seconds']} s",
        "",
        "kills by stage:  " + ", ".join(f"{s} {summary['by_stage'].get(s, 0)}" for s in STAGES),
        "kills by kind:   " + ", ".join(f"{k} {n}" for k, n in summary["by_kind"].items()),
        "kills by mode:   " + ", ".join(f"{k} {n}" for k, n in summary["by_mode"].items()),
        "in-write kills:  "
        + ", ".join(f"{k} {n}" for k, n in sorted(summary["in_write_targets"].items())),
        "",
        f"truncated JSON/checkpoint/PNG/HTML files seen after a kill: "
        f"{summary['truncated_files_seen']}",
        f"torn log.jsonl lines (the record being written, skipped by read_log): "
        f"{summary['torn_log_lines']}",
        f"TensorBoard records cut short at a file's end (TensorBoard skips them): "
        f"{summary['cut_tensorboard_records']}",
        f"temporary or lock files left after a finished rerun: {summary['leftovers']}",
    ]
    return "\n".join(lines) + "\n"


def save(summary: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "kill_test.txt").write_text(table(summary))
    (RESULTS / "kill_test.json").write_text(json.dumps(summary, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:  # an attempt's process: [--die-at SPEC] -- taskgroup argv
        rest = argv[1:]
        die_at = rest[1] if rest[:1] == ["--die-at"] else None
        command_line = rest[rest.index("--") + 1 :]
        return child(command_line, die_at)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nproc-every", type=int, default=4, help="every k-th episode --nproc 2")
    parser.add_argument("--modes", default="1,2", help="process counts to run: 1, 2 or 1,2")
    parser.add_argument("--in-write-share", type=float, default=0.35)
    parser.add_argument(
        "--max-attempts", type=int, default=3, help="attempts per run directory (kills + 1)"
    )
    parser.add_argument("--work", help="work folder (default: a new temporary folder)")
    parser.add_argument("--no-save", action="store_true")
    parser.add_argument(
        "--subprocess",
        action="store_true",
        help="start every attempt as a fresh interpreter (default: a fork of this process, "
        "taskgroup imported once; a --nproc 2 attempt spawns its ranks afresh either way)",
    )
    options = parser.parse_args(argv)
    options.modes = [int(m) for m in options.modes.split(",")]
    options.fork = not options.subprocess
    options.save = None if options.no_save else save
    summary = study(options)
    print("\n" + table(summary))
    if not options.no_save:
        save(summary)
    lost = summary["kills"] - summary["survived"]
    return 0 if lost == 0 and summary["leftovers"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
