"""The pictures, checked on the figure objects (given ``path=None``, a plot returns its Figure):
every axis labelled, nothing outside the figure, one colour per run, titles that read well."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import nnx.run  # noqa: F401 - registers generated config nodes
from nnx import experiment, plots
from nnx.run import compose


@pytest.fixture(scope="module")
def trained():
    cfg = compose(["dataset=moons", "dataset.n_samples=80", "dataset.n_test=20",
                   "model.hidden=[6]", "trainer.epochs=4", "trainer.log_every=1",
                   "tracking=none", "name=plots"])
    result = experiment.train(cfg)
    return result["trainer"], result["dataset"]


def drawn_axes(fig) -> list:
    """The figure's visible axes, colour bars left out (they label themselves by ticks)."""
    return [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]


def inside(fig, artist) -> bool:
    """Whether the artist (or a box) lies within the figure, to a pixel."""
    box = artist.get_window_extent() if hasattr(artist, "get_window_extent") else artist
    return (box.x0 >= fig.bbox.x0 - 1 and box.y0 >= fig.bbox.y0 - 1
            and box.x1 <= fig.bbox.x1 + 1 and box.y1 <= fig.bbox.y1 + 1)


def check_labelled_and_unclipped(fig) -> None:
    fig.draw_without_rendering()  # the constrained layout runs here
    assert fig.get_layout_engine() is not None
    for ax in drawn_axes(fig):
        assert ax.get_xlabel() and ax.get_ylabel(), ax.get_title()
        for label in (ax.xaxis.label, ax.yaxis.label, ax.title):
            if label.get_text():
                assert inside(fig, label), label.get_text()
        # the axes with everything drawn around it: tick labels, axis labels, title, legend
        assert inside(fig, ax.get_tightbbox()), ax.get_title()


@pytest.mark.parametrize("name", list(plots.RUN_PLOTS))
def test_every_run_plot_has_labelled_axes_and_nothing_clipped(trained, name):
    trainer, ds = trained
    fig = plots.RUN_PLOTS[name].draw(trainer, ds, None, "moons")
    check_labelled_and_unclipped(fig)
    assert fig.get_suptitle() or all(ax.get_title() for ax in drawn_axes(fig))


def test_learning_curves_label_epoch_inside_the_figure(trained):
    fig = plots.learning_curves(trained[0].history, None, "moons")
    check_labelled_and_unclipped(fig)
    assert [ax.get_xlabel() for ax in fig.axes] == ["epoch", "epoch"]
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss", "accuracy"]


def table_of(n: int) -> pd.DataFrame:
    return pd.DataFrame({"optimizer.lr": [str(0.01 * (i + 1)) for i in range(n)],
                         "model.activation": ["tanh", "relu"] * (n // 2),
                         "objective": np.linspace(1.0, 0.1, n)})


def test_objective_against_params_is_labelled_and_titled():
    fig = plots.objective_vs_params(table_of(6), "objective", ["optimizer.lr",
                                                              "model.activation"], None,
                                    "sweep 2026-12-01 10:00:00")
    check_labelled_and_unclipped(fig)
    assert [ax.get_xlabel() for ax in drawn_axes(fig)] == ["optimizer.lr", "model.activation"]
    assert {ax.get_ylabel() for ax in drawn_axes(fig)} == {"objective"}
    assert fig.get_suptitle() == "objective by parameter: sweep 2026-12-01 10:00:00"


@pytest.mark.parametrize("n", [3, 12, 25])
def test_overlaid_curves_give_every_run_its_own_colour(n):
    curves = {f"{i + 1}. #{i} lr={i}": (np.arange(1, 6), np.linspace(1, 0.1, 5) * (i + 1))
              for i in range(n)}
    fig = plots.overlay_curves(curves, "val_loss", None, "experiment spirals")
    check_labelled_and_unclipped(fig)
    (ax,) = fig.axes
    colours = [tuple(np.round(plots_rgba(line.get_color()), 4)) for line in ax.get_lines()]
    assert len(colours) == n and len(set(colours)) == n
    assert [line.get_label() for line in ax.get_lines()] == list(curves)  # best first, ranked
    assert ax.get_title() == "val_loss per epoch: experiment spirals"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("epoch", "val_loss")


def plots_rgba(colour):
    from matplotlib.colors import to_rgba

    return to_rgba(colour)


def test_run_colours_are_distinct_for_any_number():
    for n in (1, 10, 11, 20, 21, 40):
        colours = {tuple(np.round(plots_rgba(c), 4)) for c in plots.run_colors(n)}
        assert len(colours) == n, n


def test_plots_still_write_png_files(tmp_path, trained):
    path = plots.learning_curves(trained[0].history, tmp_path / "curves.png")
    assert path == tmp_path / "curves.png" and path.read_bytes()[:4] == b"\x89PNG"
