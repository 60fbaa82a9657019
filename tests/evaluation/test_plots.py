"""The evaluation's plots (`translator/plots.py`): BLEU by length and `translator plot`."""

import subprocess
import sys

from translator.pipelines.cli import main

from .conftest import BEAMS, PNG


def test_plots_are_valid_pngs(evaluated, runs, tmp_path, capsys):
    pngs = sorted(evaluated["out"].glob("*.bleu-by-length.png"))
    assert [p.name for p in pngs] == [
        f"{t}.beam{b}.bleu-by-length.png" for t in ("test", "text") for b in BEAMS
    ]
    assert all(p.read_bytes()[:8] == PNG for p in pngs)
    assert main(["plot", str(runs[0]), str(runs[1]), "--output", str(tmp_path / "curves.png")]) == 0
    assert (tmp_path / "curves.png").read_bytes()[:8] == PNG
    assert main(["plot", str(runs[0]), str(tmp_path), "--output", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "logs" / "metrics.csv") in err and not (tmp_path / "x.png").exists()


def test_plot_command_does_not_load_tensorflow(runs, tmp_path):
    """`translator plot` only reads CSV logs, so it starts without TensorFlow."""
    out = tmp_path / "curves.png"
    code = (
        "import sys; from translator.pipelines.cli import main; "
        f"rc = main(['plot', {str(runs[0])!r}, '--output', {str(out)!r}]); "
        "assert rc == 0; assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert out.read_bytes()[:8] == PNG
