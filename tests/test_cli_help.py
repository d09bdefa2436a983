"""`--help` of every command shows every option's default (or that it is required)."""

from __future__ import annotations

import click
import typer

from taskgroup.cli import app, main
from taskgroup.settings import AffinitySettings, GroupSettings

NOT_A_SETTING = {"--help", "--version"}  # eager flags: they act, they hold no value


def _help_records():
    """``(command, option, help text)`` of every option and argument of every command, as
    ``--help`` renders them (typer's own help records)."""
    group = typer.main.get_command(app)
    root = click.Context(group, info_name="taskgroup")
    commands = [("taskgroup", group), *sorted(group.commands.items())]
    for name, command in commands:
        ctx = click.Context(command, info_name=name, parent=root)
        for param in command.params:
            record = param.get_help_record(ctx)
            option = record[0].split()[0]
            if option not in NOT_A_SETTING:
                yield name, param, option, record[1]


def test_every_option_shows_its_default():
    records = list(_help_records())
    assert {name for name, *_ in records} >= {"taskgroup", "affinity", "group", "train", "run"}
    missing = []
    for name, param, option, text in records:
        if param.required:
            ok = "[required]" in text and "[default:" not in text
        else:  # one default each, whether a value or what None means
            ok = text.count("[default:") == 1
        if not ok:
            missing.append(f"{name} {option}: {text!r}")
    assert not missing, "\n".join(missing)


def test_defaults_not_settings_are_named(capsys):
    shown = {}
    for command in ("affinity", "group", "train", "run"):
        assert main([command, "--help"]) == 0
        shown[command] = " ".join(capsys.readouterr().out.split())
    for command in ("affinity", "run"):
        for default in (
            "[default: multidigits]",  # the recipe argument
            "[default: runs/<recipe name>]",  # --out
            "[default: the recipe's seed]",
            "[default: cuda when available, else cpu]",
            "[default: 1]",  # --nproc
            "[default: progress]",
            "[default: the recipe's [benchmark] data_root]",
            "An option left out takes the recipe's value",
        ):
            assert default in shown[command], (command, default)
    assert "[default: DIR/pairs.json]" in shown["group"]
    assert "[default: no certificate]" in shown["group"]
    assert "[default: RUN_DIR/groups.json]" in shown["train"]
    # a flag's default shows once, from its setting
    assert shown["group"].count("[default: false]") == 2
    assert "no-partition]" not in shown["group"] and "no-sweep]" not in shown["group"]
    # a recipe-backed option's settings default shows as what a recipe without the key gets
    assert f"a recipe without it: {AffinitySettings().lookahead}]" in shown["affinity"]
    assert f"a recipe without it: {GroupSettings().budget}]" in shown["run"]


RECIPE_BACKED = {  # command -> option -> the recipe table that sets it
    "affinity": {"--steps": "affinity", "--every": "affinity", "--lookahead": "affinity"},
    "train": {"--aggregator": "train", "--steps": "train", "--workers": "train"},
    "run": {"--budget": "group", "--lookahead": "affinity", "--aggregator": "train"},
}
RECIPE_BACKED["train"] |= {"--baselines": "train", "--seeds": "train"}
RECIPE_BACKED["run"] |= {"--workers": "train", "--seeds": "train"}


def test_recipe_backed_options_never_show_a_default_the_recipe_overrides():
    """A left-out option of affinity, train or run takes the recipe's value (the packaged
    multidigits recipe's lookahead is cosine, its budget 3): the help says so, and shows the
    settings' default only as what a recipe without that key gets."""
    from taskgroup.recipe import DEFAULT_RECIPE, load_recipe

    packaged = load_recipe(DEFAULT_RECIPE)
    records = {(name, option): text for name, _, option, text in _help_records()}
    overridden = 0
    for command, options in RECIPE_BACKED.items():
        for option, table in options.items():
            text = " ".join(records[command, option].split())
            key = option.removeprefix("--")
            settings = getattr(packaged, table)
            default = getattr(type(settings)(), key)
            shown = "the benchmark's" if default is None else str(default).lower()
            assert text.endswith(f"[default: the recipe's; a recipe without it: {shown}]"), (
                command,
                option,
                text,
            )
            assert f"[default: {shown}]" not in text
            overridden += getattr(settings, key) != default
    assert overridden >= 3  # the packaged recipe does set lookahead, budget, steps...


def test_flags_left_out_take_the_settings_default(tmp_path):
    """--partition/--sweep left out are unset on the command line: GroupSettings decides."""
    import numpy as np

    import taskgroup as tg

    values = np.random.default_rng(0).normal(size=(4, 4)) * 0.01
    tg.AffinityMatrix(values, list("abcd"), lookahead="sgd").save(tmp_path / "affinity.json")
    assert main(["group", str(tmp_path), "--budget", "2"]) == 0
    record = tg.Grouping.load(tmp_path / "groups.json")
    assert record.partition == GroupSettings().partition
    assert not (tmp_path / "score_vs_budget.png").exists()  # sweep off by default
    assert main(["group", str(tmp_path), "--budget", "2", "--sweep", "--partition"]) == 0
    assert (tmp_path / "score_vs_budget.png").exists()
