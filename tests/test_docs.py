"""The docs: the site builds with ``mkdocs build --strict``, and the code in the docs runs.

Which code blocks run (the convention):

- **README.md** and **docs/your-own-tasks.md** (the tutorial): every ```` ```python ```` block
  runs, in the page's order, in one namespace per page (later blocks use earlier blocks' names),
  in a fresh temporary working directory.
- **Every other page of docs/** (docs/api.md among them): only the blocks marked runnable, i.e.
  whose previous non-blank line is ``<!-- runnable -->`` (an HTML comment: invisible on the site
  and on GitHub). The unmarked blocks are signatures and fragments, e.g. api.md's
  ``tg.measure_affinity(source, settings=None, *, ...)``.
- In a page that runs, a block with a title (```` ```python title="mytasks.py" ````,
  ```` ```toml title="mytasks.toml" ````) is not run but written to that file in the working
  directory, for the blocks after it to use. Python's import path includes that directory.
- ```` ```bash ```` blocks run only when marked runnable, and may hold only ``taskgroup ...``
  command lines (and ``#`` comments): each runs as ``taskgroup.cli.main(args)`` in the working
  directory and must exit 0. (README's ``pip install`` lines are not marked, so they never run.)

A failing block's traceback names the Markdown file and its line. The examples use small step
counts so the whole page runs in seconds; they say so where real use needs more.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import taskgroup
from taskgroup.cli import main

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
FULLY_RUN = (ROOT / "README.md", DOCS / "your-own-tasks.md")
MARKER = "<!-- runnable -->"
FENCE = re.compile(r"^```(?P<lang>[\w-]+)(?P<attrs>[^`]*)$")
TITLE = re.compile(r'title="(?P<title>[^"]+)"')


@dataclasses.dataclass(frozen=True)
class Block:
    lang: str
    body: str
    line: int  # 1-based line of the body's first line in the Markdown file
    marked: bool
    title: str | None


def code_blocks(text: str) -> list[Block]:
    """The fenced code blocks of ``text`` that start at column 0, in order."""
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        opened = FENCE.match(lines[i])
        if opened is None:
            i += 1
            continue
        previous = next((s.strip() for s in reversed(lines[:i]) if s.strip()), "")
        end = next(j for j in range(i + 1, len(lines)) if lines[j].rstrip() == "```")
        title = TITLE.search(opened["attrs"])
        blocks.append(
            Block(
                lang=opened["lang"],
                body="\n".join(lines[i + 1 : end]) + "\n",
                line=i + 2,
                marked=previous == MARKER,
                title=title["title"] if title else None,
            )
        )
        i = end + 1
    return blocks


def runnable(path: Path, full: bool | None = None) -> list[Block]:
    """The blocks of ``path`` that run (or are written to files), under the module's convention;
    ``full``: every Python block runs (default: for the pages of ``FULLY_RUN``)."""
    full = path in FULLY_RUN if full is None else full
    chosen = []
    for block in code_blocks(path.read_text(encoding="utf-8")):
        if block.lang == "bash":
            runs = block.marked
        else:
            runs = (block.title is not None or block.lang == "python") and (full or block.marked)
        if runs:
            chosen.append(block)
    return chosen


def run_blocks(path: Path, blocks: list[Block], cwd: Path, monkeypatch) -> dict:
    """Run ``blocks`` of ``path`` in order in ``cwd``; returns the Python namespace."""
    monkeypatch.chdir(cwd)
    monkeypatch.syspath_prepend(str(cwd))
    namespace: dict = {"__name__": "__main__"}
    before = set(sys.modules)
    try:
        with torch.random.fork_rng(devices=[]):
            for block in blocks:
                if block.title is not None:
                    (cwd / block.title).write_text(block.body, encoding="utf-8")
                elif block.lang == "python":
                    # padded so that a traceback's line numbers are the Markdown file's
                    source = "\n" * (block.line - 1) + block.body
                    exec(compile(source, str(path), "exec"), namespace)
                else:
                    run_commands(path, block)
    finally:
        for name in set(sys.modules) - before:  # the page's own modules, written into cwd
            if str(cwd) in str(getattr(sys.modules[name], "__file__", None) or ""):
                del sys.modules[name]
    return namespace


def run_commands(path: Path, block: Block) -> None:
    for offset, line in enumerate(block.body.splitlines()):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        args = shlex.split(line, comments=True)
        where = f"{path.name}:{block.line + offset}"
        assert args[0] == "taskgroup", f"{where}: a runnable bash line must be a taskgroup command"
        assert main(args[1:]) == 0, f"{where}: {line!r} failed"


# --- the convention itself ---------------------------------------------------------------------

SAMPLE = """# page

```python
a = 1
```

<!-- runnable -->

```python
b = 2
```

- a list
  ```python
  indented = "not a top-level block"
  ```

```toml title="r.toml"
x = 1
```

<!-- runnable -->
```bash
taskgroup --version
```
"""


def test_code_blocks_follow_the_convention(tmp_path):
    blocks = code_blocks(SAMPLE)
    assert [(b.lang, b.marked, b.title) for b in blocks] == [
        ("python", False, None),
        ("python", True, None),
        ("toml", False, "r.toml"),
        ("bash", True, None),
    ]
    lines = SAMPLE.splitlines()
    for block in blocks:
        assert lines[block.line - 1] == block.body.splitlines()[0]
    page = tmp_path / "page.md"
    page.write_text(SAMPLE)
    assert [b.body for b in runnable(page)] == ["b = 2\n", "taskgroup --version\n"]
    every = ["a = 1\n", "b = 2\n", "x = 1\n", "taskgroup --version\n"]
    assert [b.body for b in runnable(page, full=True)] == every


def test_a_failing_block_names_the_markdown_line(tmp_path, monkeypatch):
    page = tmp_path / "page.md"
    page.write_text("intro\n\n```python\nx = 1\nundefined_name\n```\n")
    with pytest.raises(NameError) as caught:
        run_blocks(page, code_blocks(page.read_text()), tmp_path, monkeypatch)
    frame = caught.traceback[-1]
    assert (Path(str(frame.path)), frame.lineno + 1) == (page, 5)


# --- README ----------------------------------------------------------------------------------


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    blocks = runnable(ROOT / "README.md")
    assert len([b for b in blocks if b.lang == "python"]) >= 2
    ns = run_blocks(ROOT / "README.md", blocks, tmp_path, monkeypatch)
    # what the README says they show: `planted`'s two planted groups, found by the affinity
    assert ns["grouping"].groups == [("g0_t0", "g0_t1"), ("g1_t0", "g1_t1")]
    results = json.loads((tmp_path / "runs" / "mine" / "results.json").read_text())
    assert [g["tasks"] for g in results["groups"]] == [["g0_t0", "g0_t1"], ["g1_t0", "g1_t1"]]
    assert ns["affinity"].tasks == ["g0_t0", "g0_t1", "g1_t0", "g1_t1"]


def test_readme_keeps_the_ci_test_command():
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci == 'pip install torch==2.13.0 -e ".[dev]" && python -m pytest -q -m "not slow"'
    readme = (ROOT / "README.md").read_text()
    assert ci in readme
    assert 'pip install torch==2.13.0 -e ".[dev]" && taskgroup run' in readme
    assert "mkdocs build" in readme


# --- docs pages ------------------------------------------------------------------------------


def marked_pages() -> list[Path]:
    pages = sorted(p for p in DOCS.rglob("*.md") if p not in FULLY_RUN)
    return [p for p in pages if runnable(p)]


def test_api_page_has_runnable_blocks():
    assert DOCS / "api.md" in marked_pages()


@pytest.mark.parametrize("page", marked_pages(), ids=lambda p: str(p.relative_to(DOCS)))
def test_marked_blocks_of_docs_pages_run(page, tmp_path, monkeypatch):
    run_blocks(page, runnable(page), tmp_path, monkeypatch)


# --- the site --------------------------------------------------------------------------------


def build(config: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # material's banner about MkDocs 2.0
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config)]
    return subprocess.run(
        [*command, "--site-dir", str(site)],
        cwd=config.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def public_names(module) -> list[str]:
    """``__all__`` of ``module``, without submodules and dunder names."""
    names = [n for n in module.__all__ if not n.startswith("__")]
    return [n for n in names if not isinstance(getattr(module, n), type(taskgroup))]


def test_site_builds_strict_with_the_api_reference(tmp_path):
    done = build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING" not in done.stderr, done.stderr
    import taskgroup.affinity
    import taskgroup.settings

    pages = {
        "taskgroup": taskgroup,
        "settings": taskgroup.settings,
        "affinity": taskgroup.affinity,
        "grouping": taskgroup.grouping,
        "aggregators": taskgroup.aggregators,
        "data": taskgroup.data,
    }
    for page, module in pages.items():
        html = (tmp_path / "site" / "reference" / page / "index.html").read_text()
        names = getattr(module, "__all__", None) and public_names(module)
        if names is None:  # settings: its public classes
            tree = ast.parse(Path(module.__file__).read_text())
            names = [n.name for n in tree.body if isinstance(n, ast.ClassDef)]
            names = [n for n in names if not n.startswith("_")]
        missing = [n for n in names if f'id="{module.__name__}.{n}"' not in html]
        assert not missing, f"reference/{page}: no entry for {missing}"


def test_strict_build_fails_on_broken_links_anchors_and_docstrings(tmp_path):
    """The site's settings (validation, griffe) on a tiny project with one fault of each kind."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# Home\n\n## Present\n\n[a](other.md#absent) [b](gone.md)\n")
    (docs / "other.md").write_text("# Other\n\n::: faulty\n")
    (tmp_path / "faulty.py").write_text(
        '"""A module."""\n\n\ndef f(x):\n    """Do.\n\n    Args:\n        no colon here\n    """\n'
    )
    config["docs_dir"] = str(docs)
    config["nav"] = ["index.md", "other.md"]
    plugin = next(p for p in config["plugins"] if isinstance(p, dict) and "mkdocstrings" in p)
    handler = plugin["mkdocstrings"]["handlers"]["python"]
    handler["paths"] = [str(tmp_path)]
    path = tmp_path / "mkdocs.yml"
    path.write_text(yaml.safe_dump(config))
    done = build(path, tmp_path / "site")
    assert done.returncode != 0
    assert "'other.md#absent'" in done.stderr, done.stderr
    assert "'gone.md'" in done.stderr, done.stderr
    assert "griffe: faulty.py" in done.stderr, done.stderr


# --- the tutorial ------------------------------------------------------------------------------


def test_your_own_tasks_runs_in_python_and_through_its_recipe(tmp_path, monkeypatch):
    page = DOCS / "your-own-tasks.md"
    blocks = runnable(page)
    assert [b.title for b in blocks if b.title] == ["mytasks.py", "mytasks.toml"]
    assert any(b.lang == "bash" for b in blocks)
    ns = run_blocks(page, blocks, tmp_path, monkeypatch)
    # the Dataset streams the rows the tensors hold: the same affinity, bit for bit
    assert (ns["streamed_affinity"].values == ns["affinity"].values).all()
    # the recipe builds the same benchmark with the same settings: the same affinity and groups
    run = tmp_path / "runs" / "mytasks"
    recorded = json.loads((run / "affinity.json").read_text())
    assert recorded["tasks"] == ns["affinity"].tasks
    assert (np.array(recorded["values"]) == ns["affinity"].values).all()
    groups = json.loads((run / "groups.json").read_text())["groups"]
    assert [tuple(g) for g in groups] == ns["grouping"].groups
    for name in ("results.json", "report.html"):
        assert (run / name).is_file(), name
    # what the page says the manifest records: the factory and a fingerprint of its data
    recorded = json.loads((run / "manifest.json").read_text())["run"]
    assert recorded["factory"] == f"{tmp_path / 'mytasks.py'}:make"
    assert recorded["data"]["train"]["rows"] == 1000
    # `taskgroup train --aggregator pcgrad` retrained the groups on the same run
    assert json.loads((run / "results.json").read_text())["aggregator"] == "pcgrad"


# --- signatures written in the docs ----------------------------------------------------------
#
# A Python block whose previous non-blank line is ``<!-- signatures -->`` holds signatures:
# every ``tg.name(...)`` in it is a parameter list (``name: type = default``; the types are for
# the reader and are not compared) that must equal the real one: the same names in the same
# order, the same kinds (positional, keyword-only after ``*``, ``*args``, ``**kwargs``) and the
# same defaults. A function's closing line ends with ``# -> type``, its return annotation
# (``tg.`` and ``tg.grouping.`` prefixes dropped).

SIGNATURES = "<!-- signatures -->"
KINDS = {
    inspect.Parameter.POSITIONAL_ONLY: "positional",
    inspect.Parameter.POSITIONAL_OR_KEYWORD: "positional",
    inspect.Parameter.KEYWORD_ONLY: "keyword-only",
    inspect.Parameter.VAR_POSITIONAL: "*args",
    inspect.Parameter.VAR_KEYWORD: "**kwargs",
}


@dataclasses.dataclass(frozen=True)
class Documented:
    name: str  # "tg.select_groups"
    args: ast.arguments
    returns: str | None  # the "# -> type" comment of the closing line
    line: int


def signature_blocks(text: str) -> list[Block]:
    lines = text.splitlines()
    chosen = []
    for block in code_blocks(text):
        fence = block.line - 2  # 0-based index of the opening fence
        previous = next((s.strip() for s in reversed(lines[:fence]) if s.strip()), "")
        if block.lang == "python" and previous == SIGNATURES:
            chosen.append(block)
    return chosen


def documented_signatures(text: str) -> list[Documented]:
    found = []
    for block in signature_blocks(text):
        body = block.body
        for call in re.finditer(r"\btg(?:\.\w+)+\(", body):
            depth, end = 1, call.end()
            while depth:
                depth += {"(": 1, ")": -1}.get(body[end], 0)
                end += 1
            line = block.line + body[: call.start()].count("\n")
            try:
                parsed = ast.parse(f"def _({body[call.end() : end - 1]}): pass").body[0]
            except SyntaxError as error:
                raise AssertionError(f"line {line}: not a parameter list: {error}") from None
            closing = body[end:].split("\n", 1)[0]
            comment = re.match(r"[^#]*#\s*->\s*(.+?)(\s{2,}.*)?$", closing)
            name = call.group()[:-1]
            found.append(Documented(name, parsed.args, comment and comment[1], line))
    return found


def _resolve(dotted: str):
    obj = taskgroup
    for part in dotted.split(".")[1:]:
        obj = getattr(obj, part)
    return obj


def _plain(annotation: str) -> str:
    return re.sub(r"\b(tg|taskgroup)\.(grouping\.)?", "", annotation).replace(" ", "")


def _documented_parameters(args: ast.arguments) -> list[tuple[str, str, ast.expr | None]]:
    positional = args.posonlyargs + args.args
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    params = [(a.arg, "positional", d) for a, d in zip(positional, defaults, strict=True)]
    if args.vararg:
        params.append((args.vararg.arg, "*args", None))
    params += [
        (a.arg, "keyword-only", d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)
    ]
    if args.kwarg:
        params.append((args.kwarg.arg, "**kwargs", None))
    return params


def _real_default(obj, parameter: inspect.Parameter):
    if dataclasses.is_dataclass(obj) and repr(parameter.default) == "<factory>":
        field = next(f for f in dataclasses.fields(obj) if f.name == parameter.name)
        return field.default_factory()
    return parameter.default


def signature_problems(documented: Documented) -> list[str]:
    """How ``documented`` differs from the real signature (empty when it does not)."""
    where = f"line {documented.line}: {documented.name}"
    try:
        obj = _resolve(documented.name)
    except AttributeError:
        return [f"{where}: no such name"]
    real = list(inspect.signature(obj).parameters.values())
    params = _documented_parameters(documented.args)
    problems = []
    if [p[0] for p in params] != [p.name for p in real]:
        problems.append(
            f"{where}: parameters {[p[0] for p in params]}, real {[p.name for p in real]}"
        )
    by_name = {p.name: p for p in real}
    for name, kind, default in params:
        if name not in by_name:
            continue
        parameter = by_name[name]
        if kind != KINDS[parameter.kind]:
            problems.append(f"{where}: {name} is {kind}, real {KINDS[parameter.kind]}")
        if (default is None) != (parameter.default is inspect.Parameter.empty):
            problems.append(f"{where}: {name} default documented {default is not None}, real not")
        elif default is not None and ast.literal_eval(default) != _real_default(obj, parameter):
            problems.append(
                f"{where}: {name}={ast.unparse(default)}, real {_real_default(obj, parameter)!r}"
            )
    if not inspect.isclass(obj):
        annotation = inspect.signature(obj).return_annotation
        annotation = annotation if isinstance(annotation, str) else annotation.__name__
        if documented.returns is None or _plain(documented.returns) != _plain(annotation):
            problems.append(f"{where}: returns '# -> {documented.returns}', real {annotation}")
    return problems


DRIFTED = """
<!-- signatures -->
```python
r = tg.select_groups(Z_or_A, budget: int, *, tasks=None, method="exact", partition=False,
                     singleton_score=None, time_limit=None)        # -> tg.Grouping
curve = tg.grouping.sweep(Z_or_A, budgets=None, *, tasks=None, method="auto",
                          partition=False, singleton_score=None, time_limit=None,
                          seed=0)                                  # -> tg.Grouping
tg.AffinityTracker(model, losses, shared=None, *, optimizer=None, lr=None, lookahead=None,
                   every=1, **lookahead_options)
```
"""


def test_the_signature_check_finds_drift():
    found = documented_signatures(DRIFTED)
    assert [d.name for d in found] == [
        "tg.select_groups",
        "tg.grouping.sweep",
        "tg.AffinityTracker",
    ]
    assert [d.line for d in found] == [4, 6, 9]
    select, sweep, tracker = (signature_problems(d) for d in found)
    assert len(select) == 2 and "real [" in select[0] and "'seed']" in select[0]  # one left out
    assert select[1] == "line 4: tg.select_groups: method='exact', real 'auto'"  # a default
    assert sweep == ["line 6: tg.grouping.sweep: returns '# -> tg.Grouping', real list[Grouping]"]
    assert tracker == ["line 9: tg.AffinityTracker: shared is positional, real keyword-only"]
    fixed = DRIFTED.replace('"exact"', '"auto"').replace("limit=None)  ", "limit=None, seed=0)")
    fixed = fixed.replace(
        "seed=0)                                  # -> tg.Grouping",
        "seed=0)  # -> list[tg.Grouping]",
    )
    fixed = fixed.replace("shared=None, *, optimizer", "*, shared=None, optimizer")
    assert [p for d in documented_signatures(fixed) for p in signature_problems(d)] == []


def test_api_signatures_match_the_code():
    found = documented_signatures((DOCS / "api.md").read_text(encoding="utf-8"))
    problems = [p for d in found for p in signature_problems(d)]
    assert not problems, "\n".join(problems)
    names = {d.name for d in found}
    long_calls = {"tg.measure_affinity", "tg.train_groups", "tg.train_group", "tg.pair_results"}
    needed = {"tg.select_groups", "tg.grouping.sweep", "tg.lookahead_affinity", *long_calls}
    assert needed | {"tg.AffinityTracker", "tg.verified_selection"} <= names


def test_api_types_the_selection_and_the_affinity_inputs():
    """select_groups and sweep state every argument's type and their return type; the affinity
    functions state the types of ``losses`` and ``targets``."""
    found = {d.name: d for d in documented_signatures((DOCS / "api.md").read_text("utf-8"))}
    for name in ["tg.select_groups", "tg.grouping.sweep"]:
        untyped = [
            a.arg for a in found[name].args.args + found[name].args.kwonlyargs if not a.annotation
        ]
        assert not untyped and found[name].returns, (name, untyped)
    for name in ["tg.lookahead_affinity", "tg.AffinityTracker", "tg.measure_affinity"]:
        args = {a.arg: a for a in found[name].args.args + found[name].args.kwonlyargs}
        for arg in {"losses", "targets"} & set(args):
            annotation = ast.unparse(args[arg].annotation) if args[arg].annotation else ""
            assert re.match(r"(dict|Mapping)\[str, ", annotation), (name, arg, annotation)
