"""The pipeline stages: prepare, tokenize, train, evaluate.

Each stage reads what it needs from the run directory and writes its results there atomically.
A stage records a fingerprint of its inputs and config in `stages/<name>.json`; when the
fingerprint is unchanged and its outputs exist, the stage is skipped (unless forced).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from translator.config import Config, ConfigError
from translator.data.corpus import (
    CleanReport,
    CorpusError,
    Pair,
    ReadReport,
    count_lines,
    heldout_indices,
    iter_clean,
    iter_tsv,
    normalize,
    read_split,
    read_tsv,
    write_tsv,
)
from translator.io import (
    atomic_write_json,
    atomic_write_text,
    file_digest,
    fingerprint,
)
from translator.precision import resolve_precision
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


def _progress(items, desc: str, unit: str, total: int | None = None):
    """`items` with a progress bar and counts on a terminal (nothing in a log file)."""
    from tqdm import tqdm

    return tqdm(
        items,
        desc=desc,
        unit=f" {unit}",
        total=total,
        file=sys.stderr,
        disable=not sys.stderr.isatty(),
    )


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
        return fingerprint("prepare", data_section(cfg), _input_digests(cfg))
    if stage == "tokenize":
        return fingerprint("tokenize", tokenizer_section(cfg), _fingerprint_of(ctx, "prepare"))
    if stage == "train":
        return fingerprint(
            "train", model_section(cfg), train_section(cfg), _fingerprint_of(ctx, "tokenize")
        )
    if stage == "evaluate":
        return fingerprint(
            "evaluate",
            decode_section(cfg),
            cfg.section("eval"),
            _fingerprint_of(ctx, "train"),
            _model_digest(ctx),
        )
    raise ValueError(stage)


def decode_section(cfg: Config) -> dict:
    """The decode config as it matters for the evaluation: the word reward and sampling options
    are left out at their defaults, so runs made before they existed keep their fingerprints,
    and `workers` always (the outputs do not depend on it)."""
    decode = cfg.section("decode")
    decode.pop("workers", None)
    for key, default in (
        ("word_reward", 0.0),
        ("sampling_topk", 1),
        ("sampling_temperature", 1.0),
        ("xla", False),
    ):
        if decode.get(key, default) == default:
            decode.pop(key, None)
    return decode


def data_section(cfg: Config) -> dict:
    """The data config as it matters for the prepared splits: `sentence_repeats` is left out at
    1 and where it has no effect (no phrases), so runs made before it existed keep their
    fingerprints."""
    data = cfg.section("data")
    if cfg.data.effective_sentence_repeats == 1:
        data.pop("sentence_repeats", None)
    return data


def tokenizer_section(cfg: Config) -> dict:
    """The tokenizer config as it matters for the tokenizers: `joint_vocab` is left out when
    false, so runs made before it existed keep their fingerprints."""
    tokenizer = cfg.section("tokenizer")
    if not tokenizer.get("joint_vocab", False):
        tokenizer.pop("joint_vocab", None)
    return tokenizer


# Model options added after runs existed, with the defaults that keep those runs' fingerprints.
NEW_MODEL_DEFAULTS = {
    "tied_softmax": False,
    "tied_embeddings": False,
    "src_word_dropout": 0.0,
    "tgt_word_dropout": 0.0,
    "embedding_initializer": "uniform",
    "embedding_init_scale": 0.05,
    "rnn_kernel_initializer": "glorot_uniform",
    "forget_bias": 1.0,
}
NEW_STACK_DEFAULTS = {"recurrent_dropout": 0.0}
NEW_DECODER_DEFAULTS = {"recurrent_initializer": "orthogonal"}


def _drop_defaults(section: dict, defaults: dict) -> None:
    for key, default in defaults.items():
        if section.get(key, default) == default:
            section.pop(key, None)


def model_section(cfg: Config) -> dict:
    """The model config as it matters for training: attention options are left out when attention
    is `none`, and the options added later are left out at their defaults, so runs made before
    those options existed keep their fingerprints."""
    model = cfg.section("model")
    if model["decoder"].get("attention", "none") == "none":
        for key in ("attention", "attention_score", "input_feeding"):
            model["decoder"].pop(key, None)
    _drop_defaults(model, NEW_MODEL_DEFAULTS)
    for stack in ("encoder", "decoder"):
        _drop_defaults(model[stack], NEW_STACK_DEFAULTS)
    _drop_defaults(model["decoder"], NEW_DECODER_DEFAULTS)
    return model


def train_section(cfg: Config) -> dict:
    """The train config as it matters for the result. How training runs (`distribute`,
    `cpu_devices`) is left out: a run may resume on other devices. The precision, accumulation,
    checkpoint-averaging, learning-rate schedule and validation-beam options are left out at their
    defaults, so runs made before they existed keep their fingerprints."""
    train = cfg.section("train")
    for key in ("distribute", "cpu_devices"):
        train.pop(key, None)
    # `auto` counts as the precision it chooses on this machine (an explicit `mixed_bfloat16`
    # and `auto` on a bfloat16 CPU train alike).
    train["mixed_precision"] = resolve_precision(train.get("mixed_precision", "auto"))
    for key, default in (
        ("learning_rate_scaling", "keep"),
        ("mixed_precision", "none"),
        ("accumulate_steps", 1),
        ("average_checkpoints", 0),
        ("warmup_steps", 0),
        ("lr_decay_factor", 1.0),
        ("lr_decay_patience", 2),
        ("lr_decay_metric", "loss"),
        ("min_learning_rate", 0.0),
        ("valid_beam_size", 1),
    ):
        if train.get(key, default) == default:
            train.pop(key, None)
    if train.get("sampling_alpha", 0.0) == 0.0:  # no subword sampling: its options do not matter
        for key in ("sampling_alpha", "sampling_nbest_size", "sampling_sides"):
            train.pop(key, None)
    return train


def training_fingerprint(ctx: Context) -> str:
    """What must match for a checkpoint to be resumed: model, data, tokenizers, all but stop settings."""
    train = {k: v for k, v in train_section(ctx.config).items() if k not in STOP_KEYS}
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
    if stage == "tokenize":
        from translator.data.records import records_complete

        # The training records (shards and manifest) too: a run directory from before they
        # existed tokenizes again (and `train` alone writes them if they are missing).
        if not records_complete(run.train_records):
            return False
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
    if not ctx.force:
        _refuse_to_replace_a_model(ctx, stage, fp)
    ctx.log(f"[{stage}] running")
    t0 = time.time()
    summary = fn(ctx)
    summary["seconds"] = round(time.time() - t0, 2)
    if not _is_chief(ctx):
        return summary  # a multi-worker training worker other than the chief writes nothing here
    _record_config(ctx, stage)
    # Recompute: evaluate's fingerprint depends on the model file, train's output.
    atomic_write_json(marker, {"fingerprint": _stage_fingerprint(ctx, stage), "summary": summary})
    return summary


def _checkpoint_fingerprints(run: RunDir) -> set[str]:
    """The training fingerprints recorded beside the checkpoints (readable state files only)."""
    from translator.io import read_json

    found = set()
    for path in (run.train_state, run.previous_train_state):
        try:
            saved = read_json(path) if path.is_file() else None
        except Exception:  # a damaged state file: `resume` reports it
            continue
        if isinstance(saved, dict) and isinstance(saved.get("fingerprint"), str):
            found.add(saved["fingerprint"])
    return found


def _flat(values: dict, prefix: str) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def _changed_settings(ctx: Context, stage: str) -> list[str]:
    """`key: old -> new` for the settings of `stage`'s sections that differ from what
    `config.yaml` recorded (empty when it cannot be read, or only inputs changed)."""
    try:
        saved = ctx.run.load_config()
    except (ConfigError, OSError):
        return []
    old: dict[str, object] = {}
    new: dict[str, object] = {}
    for section in STAGE_SECTIONS[stage]:
        old.update(_flat(saved.section(section), section + "."))
        new.update(_flat(ctx.config.section(section), section + "."))
    stops = {f"train.{k}" for k in STOP_KEYS} if stage == "train" else set()
    return [
        f"{key}: {old.get(key)!r} -> {new[key]!r}"
        for key in new
        if key not in stops and old.get(key) != new[key]
    ]


def _refuse_to_replace_a_model(ctx: Context, stage: str, fp: str) -> None:
    """Raise StageError when running `stage` now would throw away a trained model (or the
    checkpoints of an unfinished training) because settings changed: a `prepare` or `tokenize`
    that was done with other settings (what the model was trained on would be replaced), or a
    `train` whose checkpoints were made with other settings (it could not resume them, so it would
    start from scratch). `--force` does it; a stage that is new, or repairs missing outputs with
    the same settings, runs."""
    run = ctx.run
    trained = [p for p in (run.model_file, run.last_checkpoint) if p.is_file()]
    if stage not in ("prepare", "tokenize", "train") or not trained:
        return
    if stage == "train":
        recorded = _checkpoint_fingerprints(run)
        if not recorded:  # no training state to compare with: the stage record decides
            earlier = run.stage_record("train").get("fingerprint")
            if earlier is None or earlier == fp:
                return
        elif training_fingerprint(ctx) in recorded:
            return  # the checkpoints resume (a stop setting such as train.epochs may differ)
        what = "training could not resume its checkpoints: it would start from scratch and replace"
    else:
        earlier = run.stage_record(stage).get("fingerprint")
        if earlier is None or earlier == fp:
            return
        what = {
            "prepare": "preparing the data again would replace the data it was trained on (and "
            "the next training would start from scratch, replacing",
            "tokenize": "training the tokenizers again would replace those it reads (and the "
            "next training would start from scratch, replacing",
        }[stage]
    changed = _changed_settings(ctx, stage)
    if changed:
        why = "these settings changed: " + "; ".join(changed)
    elif stage == "prepare":
        why = "its input files changed"
    else:
        why = "what it was made from changed (an earlier stage was rerun with other settings)"
    closing = "" if stage == "train" else ")"
    raise StageError(
        f"[{stage}] stopped: {run.path} holds a trained model ({trained[0].name}) and {why}; "
        f"{what} it{closing}. To keep the model, give another --run-dir (or a new config name); "
        "to replace it, rerun with --force"
    )


def _is_chief(ctx: Context) -> bool:
    from translator.training.distribute import worker_role

    return worker_role(ctx.config.train.distribute).is_chief


def run_stages(ctx: Context, stages: list[str]) -> None:
    """Run `stages` in pipeline order, holding the run directory's writer lock.

    With `train.distribute: multi_worker`, the workers other than the chief only train, without
    the lock: they read the run directory and the chief writes it."""
    if not _is_chief(ctx):
        others = [s for s in stages if s != "train"]
        if others:
            raise StageError(
                f"stages {', '.join(others)}: with train.distribute: multi_worker, a worker other "
                "than the chief runs only `translator train`; prepare and tokenize the run first "
                "(translator run CONFIG --stages prepare,tokenize)"
            )
        run_stage(ctx, "train")
        return
    _refuse_a_foreign_directory(ctx.run)
    with ctx.run.lock():
        for stage in STAGES:
            if stage in stages:
                run_stage(ctx, stage)


def _refuse_a_foreign_directory(run: RunDir) -> None:
    """A run directory is new, empty, or one this tool made (it takes its `.lock` before
    writing anything, and records finished stages in `stages/`). Any other directory is refused
    before anything is written: the stages would replace its `config.yaml` and `data/*.tsv`
    (e.g. `--run-dir .` in a project whose corpus is data/train.tsv)."""
    path = run.path
    if not path.is_dir() or run.lock_file.exists() or (path / "stages").is_dir():
        return
    if any(path.iterdir()):
        raise StageError(
            f"run directory {path} is not empty and is not a run directory (no .lock or stages/ "
            "in it): the stages would write over its config.yaml and data/; give a new or empty "
            "directory (--run-dir)"
        )


def _refuse_to_overwrite_inputs(ctx: Context) -> None:
    """The corpus files prepare reads must not be the split files it writes."""
    d = ctx.config.data
    outputs = {ctx.run.split(split).resolve(): split for split in SPLITS}
    for key in ("train", "valid", "test"):
        for given in filter(None, (part.strip() for part in (getattr(d, key) or "").split(","))):
            split = outputs.get(Path(given).resolve())
            if split is not None:
                raise StageError(
                    f"data.{key}: {given} is the run directory's own data/{split}.tsv, which "
                    "prepare writes; keep the corpus outside the run directory, or give another "
                    "--run-dir"
                )


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
    """Read, normalise, filter and split the corpus into data/{train,valid,test}.tsv, streaming.

    Training pairs are cleaned and written to train.tsv as they are read, in bounded memory;
    reading stops once `data.max_train_pairs` are written (`train_dropped` and the skipped-line
    counts then cover the lines read until then). Valid and test splits are small and read whole.
    A corpus without them has them cut from train in two passes, in O(valid + test) memory: the
    first counts the cleaned pairs (n); `random.Random(data.split_seed).sample(range(n),
    n_valid + n_test)` picks the positions of valid (the first n_valid, in that order) and of
    test; the second pass writes the other pairs to train.tsv in corpus order and collects the
    held-out ones (see `heldout_indices`). Before streaming, a made split shuffled the whole
    list, so the same seed now holds out other pairs than it used to.
    """
    cfg = ctx.config
    d = cfg.data
    _refuse_to_overwrite_inputs(ctx)
    report = ReadReport()
    raw_train = read_split(d, "train", report)  # a missing file fails here, before anything
    raw = {split: read_split(d, split, report) for split in ("valid", "test")}
    raw = {split: None if pairs is None else list(pairs) for split, pairs in raw.items()}
    train_report = CleanReport()
    train_path = ctx.run.split("train")
    made = raw["valid"] is None or raw["test"] is None
    if made:
        cleaned = iter_clean(
            _progress(raw_train, "[prepare] cleaning (pass 1 of 2)", "pairs"),
            d.max_words,
            train_report,
        )
        n = sum(1 for _ in cleaned)
        try:
            valid_at, test_at = heldout_indices(n, d.valid_fraction, d.test_fraction, d.split_seed)
        except CorpusError:
            raise CorpusError(
                f"{_split_source(d, 'train')}: {_cleaning_counts(train_report, report, d)}: too few "
                "pairs to cut valid and test from and train on the rest (give more pairs, or "
                "data.valid and data.test)"
            ) from None
        # A split given as a file is not also cut from train (its pairs would be in no split);
        # the other keeps the positions the seed gives it.
        valid_at = [] if raw["valid"] is not None else valid_at
        test_at = [] if raw["test"] is not None else test_at
        heldout: dict[int, Pair | None] = dict.fromkeys([*valid_at, *test_at])
        again = iter_clean(
            _progress(read_split(d, "train"), "[prepare] writing (pass 2 of 2)", "pairs", n),
            d.max_words,
            CleanReport(),
        )
        n_train = write_tsv(_nonempty(_cut(again, heldout, d.max_train_pairs), "train"), train_path)
        if any(p is None for p in heldout.values()):
            raise CorpusError(f"the {d.corpus} corpus changed while prepare read it twice")
        made_splits = {
            "valid": [heldout[i] for i in valid_at],
            "test": [heldout[i] for i in test_at],
        }
        raw = {split: made_splits[split] if raw[split] is None else raw[split] for split in raw}
    else:
        cleaned = iter_clean(
            _progress(raw_train, "[prepare] cleaning", "pairs"), d.max_words, train_report
        )
        n_train = write_tsv(
            _nonempty(
                itertools.islice(cleaned, d.max_train_pairs),
                "train",
                lambda: f"{_split_source(d, 'train')}: {_cleaning_counts(train_report, report, d)}",
            ),
            train_path,
        )
    summary: dict = {
        "malformed_skipped": report.malformed,
        "blank_lines_skipped": report.blank,
        "train_dropped": dataclasses.asdict(train_report),
    }
    if made:
        summary["split"] = "made deterministically from train"
    splits = {}
    for split in ("valid", "test"):
        # Evaluation sets are normalised but not length-filtered: every sentence is scored.
        pairs = [Pair(normalize(p.src), normalize(p.tgt)) for p in raw[split]]
        kept = [p for p in pairs if p.src and p.tgt]
        summary[f"{split}_dropped"] = dataclasses.asdict(
            CleanReport(kept=len(kept), empty=len(pairs) - len(kept))
        )
        splits[split] = kept
    summary["train_pairs"] = n_train
    limits = {"valid": d.max_valid_pairs, "test": d.max_test_pairs}
    for split in ("valid", "test"):
        if limits[split] is not None:
            splits[split] = splits[split][: limits[split]]
        if not splits[split]:
            dropped = summary[f"{split}_dropped"]["empty"]
            raise CorpusError(
                f"{_split_source(d, split)}: the {split} split is empty after cleaning "
                f"({len(raw[split])} pairs read, {dropped} with an empty side); give "
                f"data.{split} a file of pairs"
            )
        write_tsv(splits[split], ctx.run.split(split))
        summary[f"{split}_pairs"] = len(splits[split])
    summary.update(_overlap_with_train(train_path, splits))
    d_train = summary["train_dropped"]
    ctx.log(
        f"[prepare] train {summary['train_pairs']} pairs (dropped {d_train['empty']} empty, "
        f"{d_train['too_long']} longer than {d.max_words} words, {report.malformed} malformed and {report.blank} blank lines skipped), "
        f"valid {summary['valid_pairs']} (dropped {summary['valid_dropped']['empty']} empty), "
        f"test {summary['test_pairs']} (dropped {summary['test_dropped']['empty']} empty); "
        f"details in {ctx.run.data_stats}"
    )
    for split in ("valid", "test"):
        same, sources = summary[f"{split}_in_train"], summary[f"{split}_sources_in_train"]
        if sources:
            ctx.log(
                f"[prepare] note: {sources} of the {summary[f'{split}_pairs']} {split} pairs "
                f"have a source sentence that is also in train ({same} the whole pair; "
                f"{_split_source(d, split)}): {split} scores will read higher than on unseen text"
            )
    atomic_write_json(ctx.run.data_stats, summary)
    return summary


def _overlap_with_train(train_path: Path, splits: dict[str, list[Pair]]) -> dict[str, int]:
    """How many pairs of each evaluation split occur in the written train split, whole
    (`<split>_in_train`) and by their source sentence (`<split>_sources_in_train`): one pass over
    train.tsv, holding only the evaluation splits."""
    seen_pairs: set[Pair] = set()
    seen_sources: set[str] = set()
    pairs = {p for kept in splits.values() for p in kept}
    sources = {p.src for p in pairs}
    for pair in iter_tsv(train_path):
        if pair.src in sources:
            seen_sources.add(pair.src)
            if pair in pairs:
                seen_pairs.add(pair)
    counts = {}
    for split, kept in splits.items():
        counts[f"{split}_in_train"] = sum(p in seen_pairs for p in kept)
        counts[f"{split}_sources_in_train"] = sum(p.src in seen_sources for p in kept)
    return counts


def _split_source(d, split: str) -> str:
    """What a split's pairs are read from, for a message: its file(s) or the corpus."""
    spec = getattr(d, split)
    return spec if d.corpus in ("tsv", "text") and spec else f"data.corpus {d.corpus}"


def _cleaning_counts(cleaned: CleanReport, read: ReadReport, d) -> str:
    """What cleaning kept of the training lines and why it dropped the rest, for a message."""
    total = cleaned.kept + cleaned.empty + cleaned.too_long
    return (
        f"{cleaned.kept} of {total} pair{'s' if total != 1 else ''} kept ({cleaned.empty} with "
        f"an empty side, {cleaned.too_long} longer than data.max_words: {d.max_words}; "
        f"{read.malformed} malformed and {read.blank} blank lines skipped)"
    )


def _cut(
    pairs: Iterable[Pair], heldout: dict[int, Pair | None], limit: int | None
) -> Iterator[Pair]:
    """The training pairs of a made split: `pairs` but those at the positions of `heldout`,
    which are stored there instead. With `limit`, the first `limit` training pairs, reading on
    only as far as the last held-out position."""
    last = max(heldout)
    written = 0
    for i, p in enumerate(pairs):
        if i in heldout:
            heldout[i] = p
        elif limit is None or written < limit:
            written += 1
            yield p
        if limit is not None and written >= limit and i >= last:
            return


def _nonempty(
    pairs: Iterable[Pair], split: str, why: Callable[[], str] | None = None
) -> Iterator[Pair]:
    """`pairs`, failing at their end if there were none (before the split's file is replaced);
    `why()` (read then) says what was read and dropped."""
    empty = True
    for p in pairs:
        empty = False
        yield p
    if empty:
        detail = f": {why()}" if why is not None else ""
        raise CorpusError(
            f"the {split} split is empty after cleaning{detail}; check data.* settings"
        )


def load_split(run_dir: Path, split: str) -> list[Pair]:
    path = RunDir(run_dir).split(split)
    if not path.is_file():
        raise StageError(f"{path} is missing; run the `prepare` stage first")
    return read_tsv(path)


# -- tokenize --------------------------------------------------------------------------------------
def tokenize(ctx: Context) -> dict:
    """Train source and target tokenizers on the training split (streamed; SentencePiece samples
    `SENTENCEPIECE_MAX_SENTENCES` of a larger split); save them in tokenizers/. With
    `tokenizer.joint_vocab`, one tokenizer trained on both sides' sentences is saved for each side.
    Then encode the training split in chunks into sharded TFRecord files in data/
    (`translator.data.records`), which training reads."""
    from translator.data.records import write_train_records
    from translator.data.tokenizers import save_tokenizer, train_tokenizer

    t = ctx.config.tokenizer
    path = ctx.run.split("train")
    if not path.is_file():
        raise StageError(f"{path} is missing; run the `prepare` stage first")
    n = count_lines(path)
    options = {
        "model_type": t.model_type,
        "character_coverage": t.character_coverage,
        "lowercase": t.lowercase,
        "min_frequency": t.min_frequency,
        "seed": ctx.config.train.seed,
    }
    tokenizers = {}
    if t.joint_vocab:
        pairs = _progress(iter_tsv(path), "[tokenize] reading src and tgt", "pairs", n)
        texts = (text for p in pairs for text in (p.src, p.tgt))
        with _tokenizer_settings_checked(t, "src", joint=True):
            tok = train_tokenizer(t.type, texts, t.src_vocab_size, sentence_count=2 * n, **options)
        tokenizers = {"src": tok, "tgt": tok}
    else:
        for side, size in (("src", t.src_vocab_size), ("tgt", t.tgt_vocab_size)):
            pairs = _progress(iter_tsv(path), f"[tokenize] reading {side}", "sentences", n)
            texts = (getattr(p, side) for p in pairs)
            with _tokenizer_settings_checked(t, side):
                tokenizers[side] = train_tokenizer(t.type, texts, size, sentence_count=n, **options)
    for side, tok in tokenizers.items():
        save_tokenizer(tok, ctx.run.tokenizers, side)
    records = write_train_records(
        ctx.run,
        tokenizers["src"],
        tokenizers["tgt"],
        progress=lambda pairs: _progress(pairs, "[tokenize] encoding", "pairs", n),
    )
    summary = {}
    for side in ("src", "tgt"):
        summary[f"{side}_vocab_size"] = tokenizers[side].vocab_size
        summary[f"{side}_mean_tokens"] = round(records[f"{side}_tokens"] / records["pairs"], 2)
        summary[f"{side}_max_tokens"] = records[f"{side}_max_tokens"]
    summary["train_shards"] = len(records["shards"])
    if t.joint_vocab:
        summary["joint_vocab"] = True
    ctx.log(
        f"[tokenize] {t.type}{' (joint vocabulary)' if t.joint_vocab else ''}: source vocabulary "
        f"{summary['src_vocab_size']} ({summary['src_mean_tokens']} tokens/sentence), target "
        f"vocabulary {summary['tgt_vocab_size']} ({summary['tgt_mean_tokens']} tokens/sentence); "
        f"{records['pairs']} training pairs in {len(records['shards'])} record shards"
    )
    for side, name in (("src", "source"), ("tgt", "target")):
        size, asked = summary[f"{side}_vocab_size"], getattr(t, f"{side}_vocab_size")
        if size < asked:
            ctx.log(
                f"[tokenize] note: the {name} vocabulary has {size} entries, fewer than "
                f"tokenizer.{side}_vocab_size ({asked}): that is all the training text gives"
            )
    return summary


@contextlib.contextmanager
def _tokenizer_settings_checked(t, side: str, joint: bool = False) -> Iterator[None]:
    """SentencePiece refusing the settings (`TokenizerTrainingError`) as a `ConfigError` that
    names the config key, what SentencePiece said, and what to set instead."""
    from translator.data.tokenizers import TokenizerTrainingError

    try:
        yield
    except TokenizerTrainingError as e:
        key = f"tokenizer.{side}_vocab_size"
        size = getattr(t, f"{side}_vocab_size")
        which = "joint" if joint else ("source" if side == "src" else "target")
        said = f"SentencePiece training the {which} tokenizer: {e.reason}"
        if e.option == "vocab_size" and e.problem == "too_small":
            at_least = f" to at least {e.limit}" if e.limit else ""
            message = (
                f"{key}: {size} is too small for this corpus ({said}); raise it{at_least}, or "
                f"lower tokenizer.character_coverage (now {t.character_coverage}) to leave out "
                "rare characters"
            )
        elif e.option == "vocab_size" and e.problem == "too_large":
            at_most = f" to at most {e.limit}" if e.limit else ""
            message = f"{key}: {size} is too large for this corpus ({said}); lower it{at_most}"
        elif e.option == "vocab_size":
            message = f"{key}: {size} was refused ({said})"
        elif e.option == "character_coverage":
            message = (
                f"tokenizer.character_coverage: {t.character_coverage} was refused ({said}); "
                "valid values are in [0.98, 1]"
            )
        else:
            message = (
                f"tokenizer: the settings were refused ({said}); check the tokenizer section of "
                "the config (src_vocab_size, tgt_vocab_size, character_coverage, model_type)"
            )
        raise ConfigError(message) from None


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
    from translator.data.records import open_train_examples
    from translator.data.tokenizers import tokenizer_digest
    from translator.training import train as train_model

    src_tok, tgt_tok = load_tokenizers(ctx)
    if not ctx.run.split("train").is_file():
        raise StageError(f"{ctx.run.split('train')} is missing; run the `prepare` stage first")
    result = train_model(
        ctx.config,
        ctx.run,
        src_tok,
        tgt_tok,
        # The encoded training split, streamed from its records (written here if missing, by the
        # process that writes the run directory).
        open_train_examples(ctx.run, ctx.config.tokenizer.type, write_missing=_is_chief(ctx)),
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
    # What the model was trained on, so that readers notice tokenizers replaced afterwards
    # (RunDir.check_tokenizers_trained_with).
    digests = {"src": tokenizer_digest(src_tok), "tgt": tokenizer_digest(tgt_tok)}
    return {**dataclasses.asdict(result), "tokenizer_digests": digests}


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
    if "length_ratio" in report:
        print(f"{report['test_set']}: length ratio {report['length_ratio']:.3f}", flush=True)


def evaluate(ctx: Context) -> dict:
    """Translate the test split with the best model; write eval/test.hyp.txt and eval/scores.json."""
    from translator.evaluation.metrics import bleu_lengths
    from translator.translate import Translator

    translator = Translator.load(ctx.run_dir)
    d = ctx.config.decode
    decode = {
        "beam_size": d.beam_size,
        "length_penalty": d.length_penalty,
        "word_reward": d.word_reward,
        "batch_size": d.batch_size,
        "xla": d.xla,
    }
    pairs = load_split(ctx.run_dir, "test")
    hyps, scores, seconds = evaluate_pairs(translator, pairs, ctx.config.eval.metrics, **decode)
    sys_len, ref_len = bleu_lengths(hyps, [p.tgt for p in pairs])
    info = {
        "decode": {**decode, "n_best": 1},
        "length_ratio": round(sys_len / max(ref_len, 1), 4),
        "seconds": round(seconds, 2),
        "sentences_per_s": round(len(pairs) / seconds, 2),
    }
    report = write_evaluation(ctx.run.eval_dir, "test", pairs, hyps, scores, info)
    atomic_write_json(ctx.run.eval_dir / "scores.json", report)
    print_scores(report)
    return {k: v["score"] for k, v in scores.items()}
