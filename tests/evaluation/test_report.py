"""`translator.evaluation.report`: the printed table, results.json and results.csv agree."""

import csv
import re

import pytest

from translator.evaluation import EvalRow, format_signatures, format_table, worst_sentences


def _table_rows(stdout: str) -> list[list[str]]:
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("model  "))
    body = []
    for line in lines[start + 2 :]:
        if not line.strip() or line.startswith("mean ±"):
            break
        body.append(re.split(r"\s{2,}", line.strip()))
    return body


def test_table_json_and_csv_agree(evaluated):
    table = _table_rows(evaluated["stdout"])
    rows = evaluated["results"]["rows"]
    with open(evaluated["out"] / "results.csv", encoding="utf-8", newline="") as f:
        csv_rows = list(csv.DictReader(f))
    assert len(table) == len(rows) == len(csv_rows) == 8
    for cells, row, crow in zip(table, rows, csv_rows, strict=True):
        assert cells[:3] == [
            row["model"],
            row["test_set"],
            f"beam={row['decode']['beam_size']} lp=0",
        ]
        assert (crow["model"], crow["test_set"], int(crow["beam_size"])) == (
            row["model"],
            row["test_set"],
            row["decode"]["beam_size"],
        )
        for cell, metric in zip(cells[3:6], ("bleu", "chrf", "ter"), strict=True):
            score, sig = row["scores"][metric]["score"], row["significance"][metric]
            expected = f"{score:.2f} ({sig['mean']:.2f} ± {sig['ci']:.2f})"
            if sig["p_value"] is not None:
                expected += f" p={sig['p_value']:.4f}" + ("*" if sig["p_value"] < 0.05 else "")
            assert cell == expected
            assert float(crow[metric]) == pytest.approx(score)
            assert crow[f"{metric}_signature"] == row["scores"][metric]["signature"]
            assert float(crow[f"{metric}_ci"]) == pytest.approx(sig["ci"])
            assert crow[f"{metric}_p_value"] == (
                "" if sig["p_value"] is None else str(sig["p_value"])
            )
        assert cells[6] == f"{row['length_ratio']:.3f}" and float(
            crow["length_ratio"]
        ) == pytest.approx(row["length_ratio"])
        assert cells[7] == f"{row['sentences_per_s']:.1f}"
    # Legacy per-row files: `<stem>.scores.json` and `.hyp.txt`.
    assert (evaluated["out"] / "base.test.beam1.scores.json").is_file()
    assert (evaluated["out"] / "noisy.text.beam2.hyp.txt").is_file()


def test_worst_prints_k_sentences_per_row(evaluated):
    blocks = [b for b in evaluated["stdout"].split("\n\n") if b.startswith("worst ")]
    assert len(blocks) == 8
    for block in blocks:
        assert len(re.findall(r"^  #\d+  BLEU ", block, flags=re.M)) == 2
        assert block.count("      hyp: ") == 2


def _row(**scores) -> EvalRow:
    return EvalRow(
        model="m",
        run_dir=None,
        test_set="t",
        test_data="<memory>",
        test_digest="d",
        sentences=3,
        decode={"beam_size": 5, "length_penalty": 0.6, "batch_size": 8},
        scores={
            k: {"metric": k, "score": v, "signature": f"{k}-sig", "text": ""}
            for k, v in scores.items()
        },
        length_ratio=0.95,
        sys_len=19,
        ref_len=20,
        seconds=1.0,
        sentences_per_s=3.0,
        sentence_scores=[{"bleu": 10, "chrf": 5}, {"bleu": 0, "chrf": 9}, {"bleu": 0, "chrf": 1}],
    )


def test_text_output_without_significance():
    row = _row(bleu=12.345, ter=80.0)
    lines = format_table([row]).splitlines()
    assert re.split(r"\s{2,}", lines[0]) == [
        "model",
        "test",
        "decoding",
        "BLEU",
        "TER",
        "ratio",
        "sent/s",
        "note",
    ]
    assert re.split(r"\s{2,}", lines[2]) == [
        "m",
        "t",
        "beam=5 lp=0.6",
        "12.35",
        "80.00",
        "0.950",
        "3.0",
    ]
    assert format_table([]) == "(no results)"
    assert format_signatures([row, row]) == "signatures:\n  BLEU: bleu-sig\n  TER: ter-sig"
    assert worst_sentences(row, 2) == [2, 1] and worst_sentences(row, -1) == []
