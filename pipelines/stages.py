"""The pipeline stages: prepare, tokenize, train, evaluate.

Each stage reads what it needs from the run directory and writes its results there atomically.
A stage records a fingerprint of its inputs and config in `stages/<name>.json`; when the
fingerprint is unchanged and its outputs exist, the stage is skipped (unless forced).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path

from translator.config import Config
from translator.data.corpus import (
    CleanReport,
    CorpusError,
    Pair,
    ReadReport,
    clean,
    normalize,
    read_split,
    read_tsv,
    split_pairs,
    write_tsv,
)
from translator.io import (
    atomic_write_json,
    atomic_write_text,
    file_digest,
    fingerprint,
)
from translator.rundir import SPLITS, RunDir

STAGES = ("prepare", "tokenize", "train", "evaluate")
# Train settings that only decide when to stop: changing them continues a run instead of restarting it.
STOP_KEYS = ("epochs", "max_minutes", "patience")
# The config sections whose artifacts each stage writes: `config.yaml` takes a stage's sections
# only when that stage has written its artifacts, so it always describes what the run holds.
STAGE_SECTIONS = {
    "prepare": ("data",),
    "tokenize": ("tokenizer",),
    "train": ("model", "train"),
    "evaluate": ("decode", "eval"),
}


def _progress(items, desc: str, unit: str):
    """`items` with a progress bar and counts on a terminal (nothing in a log file)."""
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit=f" {unit}", file=sys.stderr, disable=not sys.stderr.isatty())


class StageError(RuntimeError):
    """A stage cannot run (e.g. an earlier stage's output is missing)."""


@dataclasses.dataclass
class Context:
    """What every stage gets: the resolved config, the run directory and whether to force."""

    config: Config
    run_dir: Path
    force: bool = False
    verbose: int = 1

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)

    @property
    def run(self) -> RunDir:
        return RunDir(self.run_dir)

    def log(self, message: str) -> None:
        if self.verbose:
            print(message, flush=True)


def _stage_fingerprint(ctx: Context, stage: str) -> str:
    cfg = ctx.config
    if stage == "prepare":
        return fingerprint("prepare", cfg.section("data"), _input_digests(cfg))
    if stage == "tokenize":
        return fingerprint("tokenize", cfg.section("tokenizer"), _fingerprint_of(ctx, "prepare"))
    if stage == "train":
        return fingerprint(
            "train", model_section(cfg), cfg.section("train"), _fingerprint_of(ctx, "tokenize")
        )
    if stage == "evaluate":
        return fingerprint(
            "evaluate",
            cfg.section("decode"),
            cfg.section("eval"),
            _fingerprint_of(ctx, "train"),
            _model_digest(ctx),
        )
    raise ValueError(stage)


def model_section(cfg: Config) -> dict:
    """The model config as it matters for training: attention options are left out when attention
    is `none`, so runs made before those options existed keep their fingerprints."""
    model = cfg.section("model")
    if model["decoder"].get("attention", "none") == "none":
        for key in ("attention", "attention_score", "input_feeding"):
            model["decoder"].pop(key, None)
    return model


def training_fingerprint(ctx: Context) -> str:
    """What must match for a checkpoint to be resumed: model, data, tokenizers, all but stop settings."""
    train = {k: v for k, v in ctx.config.section("train").items() if k not in STOP_KEYS}
    return fingerprint(
        "train-resume", model_section(ctx.config), train, _fingerprint_of(ctx, "tokenize")
    )


def _fingerprint_of(ctx: Context, stage: str) -> str | None:
    return ctx.run.stage_record(stage).get("fingerprint")


def _model_digest(ctx: Context) -> str | None:
    path = ctx.run.model_file
    return file_digest(path) if path.is_file() else None


def _input_digests(cfg: Config) -> dict:
    d = cfg.data
    if d.corpus != "tsv" and d.corpus != "text":
        return {}
    out = {}
    for split in SPLITS:
        spec = getattr(d, split)
        if spec:
            for part in spec.split(","):
                p = Path(part.strip())
                out[str(p)] = file_digest(p) if p.is_file() else "missing"
    return out


def _outputs_exist(ctx: Context, stage: str) -> bool:
    run, kind = ctx.run, ctx.config.tokenizer.type
    required = {
        "prepare": [run.split(s) for s in SPLITS],
        "tokenize": [run.tokenizer_file(kind, side) for side in ("src", "tgt")],
        "train": [run.model_file],
        "evaluate": [run.eval_dir / "scores.json"],
    }[stage]
    return all(p.is_file() for p in required)


def run_stage(ctx: Context, stage: str) -> dict:
    """Run one stage unless it is up to date; returns its summary."""
    fn: Callable[[Context], dict] = {
        "prepare": prepare,
        "tokenize": tokenize,
        "train": train,
        "evaluate": evaluate,
    }[stage]
    ctx.run_dir.mkdir(parents=True, exist_ok=True)
    fp = _stage_fingerprint(ctx, stage)
    marker = ctx.run.stage_marker(stage)
    if not ctx.force and marker.is_file() and _outputs_exist(ctx, stage):
        saved = ctx.run.stage_record(stage)
        if saved.get("fingerprint") == fp:
            ctx.log(f"[{stage}] skipped: up to date (use --force to rerun)")
            return {**saved.get("summary", {}), "skipped": True}
    ctx.log(f"[{stage}] running")
    t0 = time.time()
    summary = fn(ctx)
    summary["seconds"] = round(time.time() - t0, 2)
    _record_config(ctx, stage)
    # Recompute: evaluate's fingerprint depends on the model file, train's output.
    atomic_write_json(marker, {"fingerprint": _stage_fingerprint(ctx, stage), "summary": summary})
    return summary


def run_stages(ctx: Context, stages: list[str]) -> None:
    """Run `stages` in pipeline order, holding the run directory's writer lock."""
    with ctx.run.lock():
        for stage in STAGES:
            if stage in stages:
                run_stage(ctx, stage)


def _record_config(ctx: Context, stage: str) -> None:
    """Write `config.yaml` with the sections of `stage` (just run) from the current config and the
    others as they were, so that the file describes the artifacts the run directory holds."""
    from translator.config import ConfigError

    try:
        saved = ctx.run.load_config() if ctx.run.config_file.is_file() else ctx.config
    except ConfigError:
        saved = ctx.config  # an unreadable config.yaml is replaced by the one that was just used
    sections = {name: getattr(ctx.config, name) for name in STAGE_SECTIONS[stage]}
    ctx.run.save_config(dataclasses.replace(saved, name=ctx.config.name, **sections))


# -- prepare ---------------------------------------------------------------------------------------
def prepare(ctx: Context) -> dict:
    """Read, normalise, filter and split the corpus into data/{train,valid,test}.tsv."""
    cfg = ctx.config
    d = cfg.data
    report = ReadReport()
    raw = {split: read_split(d, split, report) for split in SPLITS}
    train, train_report = clean(_progress(raw["train"], "[prepare] cleaning", "pairs"), d.max_words)
    summary: dict = {
        "malformed_skipped": report.malformed,
        "blank_lines_skipped": report.blank,
        "train_dropped": dataclasses.asdict(train_report),
    }
    if raw["valid"] is None or raw["test"] is None:
        train, valid_split, test_split = split_pairs(
            train, d.valid_fraction, d.test_fraction, d.split_seed
        )
        raw["valid"] = raw["valid"] if raw["valid"] is not None else valid_split
        raw["test"] = raw["test"] if raw["test"] is not None else test_split
        summary["split"] = "made deterministically from train"
    splits = {"train": train}
    for split in ("valid", "test"):
        # Evaluation sets are normalised but not length-filtered: every sentence is scored.
        pairs = [Pair(normalize(p.src), normalize(p.tgt)) for p in raw[split]]
        kept = [p for p in pairs if p.src and p.tgt]
        summary[f"{split}_dropped"] = dataclasses.asdict(
            CleanReport(kept=len(kept), empty=len(pairs) - len(kept))
        )
        splits[split] = kept
    limits = {"train": d.max_train_pairs, "valid": d.max_valid_pairs, "test": d.max_test_pairs}
    for split in SPLITS:
        if limits[split] is not None:
            splits[split] = splits[split][: limits[split]]
        if not splits[split]:
            raise CorpusError(f"the {split} split is empty after cleaning; check data.* settings")
        write_tsv(splits[split], ctx.run.split(split))
        summary[f"{split}_pairs"] = len(splits[split])
    d_train = summary["train_dropped"]
    ctx.log(
        f"[prepare] train {summary['train_pairs']} pairs (dropped {d_train['empty']} empty, "
        f"{d_train['too_long']} longer than {d.max_words} words, {report.malformed} malformed and {report.blank} blank lines skipped), "
        f"valid {summary['valid_pairs']} (dropped {summary['valid_dropped']['empty']} empty), "
        f"test {summary['test_pairs']} (dropped {summary['test_dropped']['empty']} empty); "
        f"details in {ctx.run.data_stats}"
    )
    atomic_write_json(ctx.run.data_stats, summary)
    return summary


def load_split(run_dir: Path, split: str) -> list[Pair]:
    path = RunDir(run_dir).split(split)
    if not path.is_file():
        raise StageError(f"{path} is missing; run the `prepare` stage first")
    return read_tsv(path)


# -- tokenize --------------------------------------------------------------------------------------
def tokenize(ctx: Context) -> dict:
    """Train source and target tokenizers on the training split; save them in tokenizers/."""
    from translator.data.tokenizers import save_tokenizer, train_tokenizer

    t = ctx.config.tokenizer
    train = load_split(ctx.run_dir, "train")
    summary = {}
    for side, texts, size in (
        ("src", [p.src for p in train], t.src_vocab_size),
        ("tgt", [p.tgt for p in train], t.tgt_vocab_size),
    ):
        tok = train_tokenizer(
            t.type,
            texts,
            size,
            model_type=t.model_type,
            character_coverage=t.character_coverage,
            lowercase=t.lowercase,
            min_frequency=t.min_frequency,
            seed=ctx.config.train.seed,
        )
        save_tokenizer(tok, ctx.run.tokenizers, side)
        encoded = tok.encode_batch(_progress(texts, f"[tokenize] encoding {side}", "sentences"))
        lengths = [len(ids) for ids in encoded]
        summary[f"{side}_vocab_size"] = tok.vocab_size
        summary[f"{side}_mean_tokens"] = round(sum(lengths) / len(lengths), 2)
        summary[f"{side}_max_tokens"] = max(lengths)
    ctx.log(
        f"[tokenize] {t.type}: source vocabulary {summary['src_vocab_size']} "
        f"({summary['src_mean_tokens']} tokens/sentence), target vocabulary {summary['tgt_vocab_size']} "
        f"({summary['tgt_mean_tokens']} tokens/sentence)"
    )
    return summary


def load_tokenizers(ctx: Context):
    from translator.data.tokenizers import load_tokenizer

    kind = ctx.config.tokenizer.type
    try:
        return (
            load_tokenizer(ctx.run.tokenizers, kind, "src"),
            load_tokenizer(ctx.run.tokenizers, kind, "tgt"),
        )
    except FileNotFoundError as e:
        raise StageError(str(e)) from None


# -- train -----------------------------------------------------------------------------------------
def train(ctx: Context) -> dict:
    """Train with checkpoints every epoch; resumes from the last checkpoint when interrupted."""
    from translator.training import train as train_model

    src_tok, tgt_tok = load_tokenizers(ctx)
    result = train_model(
        ctx.config,
        ctx.run,
        src_tok,
        tgt_tok,
        load_split(ctx.run_dir, "train"),
        load_split(ctx.run_dir, "valid"),
        training_fingerprint(ctx),
        verbose=ctx.verbose,
        from_scratch=ctx.force,
    )
    ctx.log(
        f"[train] {result.epochs} epochs in {result.elapsed_seconds / 60:.1f} min ({result.stop_reason}); "
        f"best validation BLEU {result.best_bleu:.2f} at epoch {result.best_epoch}; "
        f"{result.train_tokens_per_s:.0f} target tokens/s"
    )
    return dataclasses.asdict(result)


# -- evaluate --------------------------------------------------------------------------------------
def evaluate_pairs(
    translator, pairs: list[Pair], metrics: list[str], **decode
) -> tuple[list[str], dict, float]:
    """Translate the sources of `pairs` and score against their targets; returns hyps, scores, seconds."""
    from translator.evaluation.metrics import corpus_scores

    t0 = time.time()
    hyps = translator.translate([p.src for p in pairs], **decode)
    seconds = time.time() - t0
    scores = corpus_scores(hyps, [p.tgt for p in pairs], metrics)
    return hyps, {k: v.to_dict() for k, v in scores.items()}, seconds


def write_evaluation(
    out_dir: Path, name: str, pairs: list[Pair], hyps: list[str], scores: dict, info: dict
) -> dict:
    """Write `<name>.hyp.txt` and `<name>.scores.json` (and return the report)."""
    atomic_write_text(out_dir / f"{name}.hyp.txt", "".join(h + "\n" for h in hyps))
    report = {"test_set": name, "sentences": len(pairs), **info, "scores": scores}
    atomic_write_json(out_dir / f"{name}.scores.json", report)
    return report


def print_scores(report: dict) -> None:
    for s in report["scores"].values():
        print(f"{report['test_set']}: {s['text']}   ({s['signature']})", flush=True)


def evaluate(ctx: Context) -> dict:
    """Translate the test split with the best model; write eval/test.hyp.txt and eval/scores.json."""
    from translator.translate import Translator

    translator = Translator.load(ctx.run_dir)
    d = ctx.config.decode
    decode = {
        "beam_size": d.beam_size,
        "length_penalty": d.length_penalty,
        "batch_size": d.batch_size,
    }
    pairs = load_split(ctx.run_dir, "test")
    hyps, scores, seconds = evaluate_pairs(translator, pairs, ctx.config.eval.metrics, **decode)
    info = {
        "decode": {**decode, "n_best": 1},
        "seconds": round(seconds, 2),
        "sentences_per_s": round(len(pairs) / seconds, 2),
    }
    report = write_evaluation(ctx.run.eval_dir, "test", pairs, hyps, scores, info)
    atomic_write_json(ctx.run.eval_dir / "scores.json", report)
    print_scores(report)
    return {k: v["score"] for k, v in scores.items()}
