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


def test_the_suffix_gives_the_format_and_an_unknown_one_is_refused(runs, tmp_path, capsys):
    for name, magic in (("curves.svg", b"<?xml"), ("curves.pdf", b"%PDF"), ("curves", PNG)):
        assert main(["plot", str(runs[0]), "--output", str(tmp_path / name)]) == 0
        assert (tmp_path / name).read_bytes().startswith(magic), name
    capsys.readouterr()
    assert main(["plot", str(runs[0]), "--output", str(tmp_path / "curves.txt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(
        f"translator: error: --output {tmp_path / 'curves.txt'}: cannot write a figure as .txt; "
        "use one of "
    )
    assert ".pdf" in err and ".svg" in err and "\n" not in err
    assert not (tmp_path / "curves.txt").exists()


def test_a_damaged_training_log_is_named_with_its_line(tmp_path, capsys):
    logs = tmp_path / "run" / "logs"
    logs.mkdir(parents=True)
    for content, expected in (
        ("epoch,loss\n1,2.5\n2,abc\n", "metrics.csv:3: loss is 'abc', not a number"),
        (b"epoch,loss\n1,\xd0\xff\n", "metrics.csv: not a readable CSV training log"),
    ):
        data = content.encode() if isinstance(content, str) else content
        (logs / "metrics.csv").write_bytes(data)
        assert main(["plot", str(tmp_path / "run"), "--output", str(tmp_path / "c.png")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("translator: error: ") and expected in err, err
        assert "Traceback" not in err and not (tmp_path / "c.png").exists()
