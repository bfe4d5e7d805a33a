"""``python -m nnx.list``: every installed component, where it comes from, and what is broken.

    python -m nnx.list                     # a table per kind, then the plugins that failed
    python -m nnx.list --kind optimizers   # one kind
    python -m nnx.list --json              # {"components": [...], "failures": [...], ...}

Each component is loaded to read its docstring (``nnx`` itself loads lazily; listing is the
one place that imports everything). A broken plugin is reported, not fatal: the exit status
is 0 unless the command line itself is wrong (an unknown ``--kind`` exits with 2).
"""

from __future__ import annotations

import argparse
import json
import sys

from nnx.registry import DISABLE_VARIABLE, KINDS, PluginError, plugins_disabled, registry

KIND_NAMES = ", ".join(k.name for k in KINDS)


def summary(obj) -> str:
    """First line of the class's own docstring ("" when it has none; base docs are not borrowed)."""
    doc = obj.__dict__.get("__doc__") if isinstance(obj, type) else getattr(obj, "__doc__", None)
    lines = (doc or "").strip().splitlines()
    return lines[0].strip() if lines else ""


def collect(kinds=None) -> dict:
    """Components, failures and duplicated names of ``kinds`` (all kinds by default).

    Returns ``{"components": [{kind, name, distribution, version, summary, value}],
    "failures": [{kind, name, distribution, version, entry_point, error}],
    "duplicates": [{kind, name, distributions}]}``, each sorted by kind then name.
    """
    components, failures, duplicates = [], [], []
    for kind in dict.fromkeys(kinds or (k.name for k in KINDS)):  # in order, each once
        reg = registry(kind)
        owners: dict[str, list[str]] = {}
        for entry in reg.entries():
            owners.setdefault(entry.name, []).append(entry.distribution)
            try:
                cls = reg.load(entry)
            except PluginError as error:
                failures.append({
                    "kind": kind, "name": entry.name, "distribution": entry.distribution,
                    "version": entry.version, "entry_point": error.entry_point,
                    "error": error.reason,
                })
                continue
            components.append({
                "kind": kind, "name": entry.name, "distribution": entry.distribution,
                "version": entry.version, "summary": summary(cls), "value": entry.value,
            })
        duplicates += [{"kind": kind, "name": name, "distributions": dists}
                       for name, dists in owners.items() if len(dists) > 1]
    return {"components": components, "failures": failures, "duplicates": duplicates}


def _table(rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return [(indent + "  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1]).rstrip()
            for r in rows]


def render(listing: dict) -> str:
    """The plain form: one aligned table per kind, then duplicated names, then failures."""
    sections = []  # each a list of lines; printed with a blank line between them
    if plugins_disabled():
        banner = f"plugins disabled ({DISABLE_VARIABLE}=1): only nnx's own components are shown"
        sections.append([banner])
    rows = [["NAME", "DISTRIBUTION", "VERSION", "SUMMARY"]] + [
        [c["name"], c["distribution"], c["version"], c["summary"]] for c in listing["components"]]
    header, *lines = _table(rows)  # one width for every kind: the tables line up
    for kind in dict.fromkeys(c["kind"] for c in listing["components"]):
        mine = [line for c, line in zip(listing["components"], lines) if c["kind"] == kind]
        sections.append([f"{kind} ({len(mine)})", header, *mine])
    notes = []
    for dup in listing["duplicates"]:
        picks = " or ".join(f"{d}:{dup['name']}" for d in dup["distributions"])
        notes.append(f"note: {registry(dup['kind']).singular} {dup['name']!r} is registered by "
                     f"{' and '.join(dup['distributions'])}; configs must pick one: {picks}")
    if notes:
        sections.append(notes)
    if listing["failures"]:
        rows = [["KIND", "NAME", "DISTRIBUTION", "ENTRY POINT"]] + [
            [f["kind"], f["name"], f"{f['distribution']} {f['version']}", f["entry_point"]]
            for f in listing["failures"]]
        header, *lines = _table(rows)
        failed = [f"failed to load ({len(lines)})", header]
        for line, failure in zip(lines, listing["failures"]):
            failed += [line, f"      {failure['error']}"]
        sections.append(failed)
    if not listing["components"] and not listing["failures"]:
        sections.append(["no components registered"])
    return "\n\n".join("\n".join(section) for section in sections) + "\n"


def _kind(value: str) -> str:
    """``activations`` or ``activation``; anything else is an error listing the valid kinds."""
    for k in KINDS:
        if value in (k.name, k.singular):
            return k.name
    raise argparse.ArgumentTypeError(f"unknown kind {value!r}; valid kinds: {KIND_NAMES}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nnx.list",
        description="List every registered nnx component (built-in and plugins) and every "
                    "plugin that failed to load.")
    parser.add_argument("--kind", type=_kind, action="append", metavar="KIND",
                        help=f"only this kind (repeatable): {KIND_NAMES}")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = parser.parse_args(argv)
    listing = collect(args.kind)
    text = json.dumps(listing, indent=2) + "\n" if args.json else render(listing)
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # `python -m nnx.list | head`
        sys.stderr.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
