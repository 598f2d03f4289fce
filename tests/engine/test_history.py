"""The per-epoch history: rows, truncation on resume, the CSV and the curves picture."""
import csv

from reid.engine.history import History


def test_rows_truncate_to_the_epochs_a_resume_keeps():
    history = History()
    for epoch in (1, 2, 3):
        history.add({"epoch": epoch, "loss_total": epoch * 1.5, "lr": 1e-3})
    history.truncate(2)
    assert [row["epoch"] for row in history.rows] == [1, 2] and history.rows[0]["loss_total"] == 1.5


def test_the_csv_has_every_column_any_row_has(tmp_path):
    history = History([{"epoch": 1, "loss_total": 2.0}, {"epoch": 2, "loss_total": 1.0, "ir2vis_mAP": 40.5}])
    history.write_csv(tmp_path / "metrics.csv")
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert rows[0] == {"epoch": "1", "loss_total": "2.0", "ir2vis_mAP": ""}
    assert rows[1]["ir2vis_mAP"] == "40.5"


def test_the_curves_are_a_png_even_before_the_first_evaluation(tmp_path):
    history = History([{"epoch": 1, "loss_total": 2.0, "loss_id": 1.5, "lr": 1e-3}])
    assert history.plot(tmp_path / "curves.png", "run").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    history.add({"epoch": 2, "loss_total": 1.0, "loss_id": 0.7, "lr": 5e-4, "ir2vis_mAP": 20.0})
    assert history.plot(tmp_path / "curves.png").stat().st_size > 1000


def test_no_legend_covers_its_plot():
    rows = [{"epoch": e, "loss_total": 3 / e, "loss_id": 2 / e, "loss_triplet_cross": 0.5 / e,
             "loss_triplet_batch": 0.4 / e, "lr": 1e-3 / e, "ir2vis_mAP": 10.0 * e, "vis2ir_mAP": 11.0 * e,
             "ir2vis_rank1": 12.0 * e, "vis2ir_rank1": 13.0 * e} for e in range(1, 11)]
    figure = History(rows).figure("run")
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    legends = 0
    for axis in figure.axes:
        legend = axis.get_legend()
        if legend is not None:
            legends += 1
            assert not legend.get_window_extent(renderer).overlaps(axis.get_window_extent(renderer))
    assert legends == 3
