"""``vaereg plugins`` (everything registered, with options, KL pairs and skipped plugins) and
``vaereg check-plugin`` (the conformance kit)."""

from __future__ import annotations

import json
import re
import sys
import typing
from pathlib import Path

import click

from vaereg import PLUGIN_API
from vaereg.combo import DEFAULT_OBJECTIVE
from vaereg.config import field_types, to_dict
from vaereg.hookspecs import SUPPORTED_APIS
from vaereg.parts import SLOTS
from vaereg.registry import get_registry
from vaereg_harness.cli.app import main
from vaereg_harness.cli.options import UserPath
from vaereg_harness.logs import loggers


def declares(entry) -> str:
    """What a listing shows beside an entry's name: its posterior, the latents it fits, how a
    data set is named, or how many result columns a metric fills."""
    cls = entry.cls
    if entry.kind == "encoder":
        fills = f", fills {'/'.join(cls.fills)}" if cls.fills else ""
        return f"posterior {cls.posterior.__name__}{fills}"
    if entry.kind in SLOTS or entry.kind == "objective":
        return f"serves {'/'.join(sorted(cls.latent_kinds))}"
    if entry.kind == "dataset":
        return f"--dataset {entry.name}" + (f":{cls.argument}" if cls.argument else "")
    return f"{len(cls.columns)} result column(s)"


def describe_options(config: type) -> list[dict]:
    """Each option of a ``Config`` dataclass: name, type, range, choices, default."""
    listed, defaults = [], to_dict(config())
    for name, kind in field_types(config).items():
        choices = typing.get_args(kind.base) if typing.get_origin(kind.base) is typing.Literal else None
        listed.append({"name": name, "type": "choice" if choices else kind.base.__name__,
                       "choices": list(choices) if choices else None,
                       "range": kind.range.describe() if kind.range is not None else None,
                       "optional": kind.optional, "default": defaults[name], "describe": kind.describe()})
    return listed


def first_sentence(doc: str | None) -> str:
    """The first sentence of a docstring's first paragraph, on one line."""
    paragraph = " ".join((doc or "").strip().split("\n\n")[0].split())
    end = re.search(r"\.\s+(?=[A-Z])", paragraph)
    return paragraph if end is None else paragraph[:end.start() + 1]


def describe_entry(entry) -> dict:
    described = {"kind": entry.kind, "name": entry.name, "description": first_sentence(entry.cls.__doc__),
                 "declares": declares(entry), "options": describe_options(entry.cls.Config)}
    if entry.kind == "metric":
        described["columns"] = [{"name": c.name, "type": c.type.__name__, "unit": c.unit,
                                 "higher_is_better": c.higher_is_better, "description": c.description}
                                for c in entry.cls.columns]
    return described


def describe_column(column: dict) -> str:
    direction = {True: "higher is better", False: "lower is better", None: ""}[column["higher_is_better"]]
    return f"{column['name']} ({', '.join(filter(None, (column['type'], column['unit'], direction)))})"


def describe_plugins() -> dict:
    """Everything ``vaereg plugins`` shows, JSON-ready: the plugin API, each plugin (its
    distribution, version, API and state) with its entries of every kind and their options, its
    presets, loggers and KL pairs, and every closed-form KL pair."""
    registry = get_registry()
    tracker_table = loggers()
    pairs = [{"posterior": q.__name__, "prior": p.__name__, "plugin": plugin}
             for (q, p), (_, plugin) in registry.kl.rules.items()]
    listing = []
    for info in registry.plugins:
        state = "disabled" if info.disabled else "skipped" if info.error else "loaded"
        entries = [describe_entry(e) for kind in registry.entries.values() for e in kind.values()
                   if e.plugin == info.name]
        presets = [{"name": p.name, "description": p.description, "slots": p.slots,
                    "objective": p.slots.get("objective", DEFAULT_OBJECTIVE), "options": p.options}
                   for p in registry.presets.values() if p.plugin == info.name]
        trackers = sorted(name for name, (_, plugin) in tracker_table.items() if plugin == info.name)
        listing.append({"name": info.name, "distribution": info.distribution, "version": info.version,
                        "api": info.api, "state": state, "error": info.error, "entries": entries,
                        "presets": presets, "loggers": trackers,
                        "kl_pairs": [p for p in pairs if p["plugin"] == info.name]})
    return {"plugin_api": PLUGIN_API, "supported_apis": list(SUPPORTED_APIS), "plugins": listing, "kl_pairs": pairs}


@main.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins_command(as_json):
    """List the plugin API and every plugin: its distribution, version and state (a skipped
    plugin with its reason), and what it registers: parts, objectives, data sets, metrics (each
    with its options), presets, loggers and closed-form KL pairs."""
    described = describe_plugins()
    if as_json:
        click.echo(json.dumps(described, indent=2, default=str))
        return
    apis = " and ".join(map(str, described["supported_apis"]))
    click.echo(f"vaereg plugin API {described['plugin_api']}\nloads plugins written for API {apis}")
    for plugin in described["plugins"]:
        state = {"loaded": "", "disabled": " (disabled)", "skipped": f" (skipped: {plugin['error']})"}[plugin["state"]]
        click.echo(f"\n{plugin['name']} {plugin['version']}{state}")
        if plugin["state"] != "loaded":
            continue
        deprecated = " (deprecated)" if plugin["api"] != described["plugin_api"] else ""
        click.echo(f"  from {plugin['distribution'] or 'an unknown distribution'} {plugin['version']}, "
                   f"plugin API {plugin['api']}{deprecated}")
        for entry in plugin["entries"]:
            click.echo(f"  {entry['kind']:<10} {entry['name']:<14} {entry['declares']:<42} {entry['description']}")
            if entry["options"]:
                options = [f"{o['name']}={json.dumps(o['default'])} ({o['describe']})" for o in entry["options"]]
                click.echo(f"{'':13}options: {'; '.join(options)}")
            if entry["kind"] == "metric":
                click.echo(f"{'':13}columns: {'; '.join(map(describe_column, entry['columns']))}")
        for preset in plugin["presets"]:
            slots = " ".join(f"{k}={v}" for k, v in preset["slots"].items() if k != "objective")
            options = " ".join(f"{g}.{k}={json.dumps(v)}" for g, values in preset["options"].items()
                               for k, v in values.items())
            click.echo(f"  preset     {preset['name']:<14} {slots} objective={preset['objective']}"
                       + (f" {options}" if options else ""))
        for name in plugin["loggers"]:
            click.echo(f"  logger     {name:<14} --log {name}")
        for pair in plugin["kl_pairs"]:
            click.echo(f"  kl         {pair['posterior']} || {pair['prior']}")
    click.echo("\nclosed-form KL pairs (posterior || prior; any other pair uses the Monte-Carlo KL):")
    plugins = {plugin["name"] for plugin in described["plugins"]}
    for pair in described["kl_pairs"]:
        owner = pair["plugin"] if pair["plugin"] in plugins else f"{pair['plugin']} (core)"
        click.echo(f"  {pair['posterior'] + ' || ' + pair['prior']:<42} {owner}")


@main.command("check-plugin")
@click.argument("name")
@click.option("--data-root", type=UserPath(path_type=Path), default=Path("data"), show_default=True,
              help="Where a data-set plugin looks for its files.")
@click.option("--json", "as_json", is_flag=True, help="The rows as JSON.")
def check_plugin_command(name, data_root, as_json):
    """Run the conformance kit on the plugin NAME (as `vaereg plugins` lists it): its
    registration checks, then for every entry and each compatible combo the probe batch, one
    training step and a K=2 NLL. Prints a pass/fail table; exits 1 when a check fails."""
    from vaereg.conformance import as_json as rows_json
    from vaereg.conformance import check_plugin, table

    rows = check_plugin(name, root=data_root)
    click.echo(rows_json(rows) if as_json else table(rows))
    counts = {result: sum(row.result == result for row in rows) for result in ("pass", "skip", "fail")}
    if not as_json:
        click.echo(f"{name}: {counts['pass']} passed, {counts['skip']} skipped, {counts['fail']} failed")
    if counts["fail"]:
        sys.exit(1)
