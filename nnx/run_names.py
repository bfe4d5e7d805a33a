"""Run names that say what differs, short enough for the MLflow UI's runs table (~20 chars).

    child_name(3, ["optimizer=adam", "model.activation=relu"], {"optimizer", "model.activation"})
        -> "#3 adam relu"
    child_name(19, ["optimizer.lr=0.04194198868307857", "optimizer.weight_decay=1.14215e-5"], ...)
        -> "#19 lr=0.0419 weight_decay=1.14e-05"
    parent_name("spirals", when)  -> "sweep spirals 14:03:27"
    single_name("spirals", when)  -> "spirals 14:03:27"

A varied override contributes its value: a string as it is, a number at 3 significant digits
after its key's last segment (a bare number would not say which knob it is).
"""

from __future__ import annotations

import time

from nnx.sweep_parent import override_key

DIGITS = 3  # significant digits of a number in a name


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if text.strip().lower() not in ("nan", "inf", "-inf", "infinity") else None


def short_value(key: str, value: str) -> str:
    """``optimizer=adam`` -> ``adam``; ``optimizer.lr=0.041941`` -> ``lr=0.0419``."""
    value = str(value).strip().strip("'\"")
    number = _number(value)
    if number is None:
        return value
    shown = str(int(number)) if number.is_integer() and abs(number) < 1e6 \
        else f"{number:.{DIGITS}g}"
    return f"{key.rsplit('.', 1)[-1]}={shown}"


def varied_values(overrides: list[str], swept) -> list[tuple[str, str]]:
    """(key, value) of the overrides whose key the sweep varies, in the overrides' order."""
    swept = set(swept)
    out = []
    for override in overrides:
        key = override_key(override)
        if key in swept:
            out.append((key, override.partition("=")[2]))
    return out


def child_name(number, overrides: list[str], swept) -> str:
    """``#<job number> <value> <value> ...`` for a sweep's job."""
    return " ".join([f"#{number}", *(short_value(k, v) for k, v in varied_values(overrides, swept))])


def parent_name(experiment: str, when: float | None = None) -> str:
    return f"sweep {experiment} {time.strftime('%H:%M:%S', time.localtime(when))}"


def single_name(experiment: str, when: float | None = None) -> str:
    return f"{experiment} {time.strftime('%H:%M:%S', time.localtime(when))}"
