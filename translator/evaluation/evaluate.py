"""Scoring with sacrebleu, and evaluation of trained runs on test sets.

`corpus_scores` and `bleu` score hypotheses. `evaluate` translates test sets with one or more
trained runs and several decoding settings, scores them (BLEU, chrF, TER with their sacrebleu
signatures), compares every model with the first one by sacrebleu's paired bootstrap resampling,
scores every sentence, caches hypotheses in `RUN_DIR/eval/cache/` and can write the results
(`results.json`, `results.csv`, per-row hypotheses and sentence scores, BLEU-by-length plots).

Example:
    >>> from translator.evaluation import evaluate, format_table
    >>> rows = evaluate(["runs/a", "runs/b"], {"news": "news.tsv"}, beam_sizes=(1, 5))
    >>> print(format_table(rows))
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import math
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from translator.data.corpus import CorpusError, Pair, read_text_pair, read_tsv
from translator.io import (
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    file_digest,
    fingerprint,
    read_json,
)


@dataclass
class Score:
    """One corpus-level score."""

    metric: str
    score: float
    signature: str
    text: str

    def to_dict(self) -> dict:
        return asdict(self)


def _metric(name: str):
    import sacrebleu

    if name == "bleu":
        return sacrebleu.metrics.BLEU()
    if name == "chrf":
        return sacrebleu.metrics.CHRF()
    if name == "ter":
        return sacrebleu.metrics.TER()
    raise ValueError(f"unknown metric {name!r}; valid choices: bleu, chrf, ter")


def corpus_scores(
    hypotheses: list[str], references: list[str], metrics: list[str]
) -> dict[str, Score]:
    """Score hypotheses against one reference each.

    Args:
        hypotheses: detokenised system outputs.
        references: one reference per hypothesis.
        metrics: names among `bleu`, `chrf`, `ter`.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    out = {}
    for name in metrics:
        metric = _metric(name)
        result = metric.corpus_score(hypotheses, [references])
        out[name] = Score(name, float(result.score), str(metric.get_signature()), str(result))
    return out


def bleu(hypotheses: list[str], references: list[str]) -> float:
    """Corpus BLEU (sacrebleu defaults)."""
    return corpus_scores(hypotheses, references, ["bleu"])["bleu"].score


# -- evaluation of trained runs --------------------------------------------------------------------
METRICS = ("bleu", "chrf", "ter")
METRIC_LABELS = {"bleu": "BLEU", "chrf": "chrF", "ter": "TER"}
# Source-length buckets (words, inclusive) for the BLEU-by-length breakdown.
LENGTH_BUCKETS: tuple[tuple[int, int | None, str], ...] = (
    (0, 5, "1-5"),
    (6, 10, "6-10"),
    (11, 15, "11-15"),
    (16, 20, "16-20"),
    (21, 30, "21-30"),
    (31, None, "31+"),
)
DEFAULT_BOOTSTRAP = 1000
DEFAULT_SEED = 12345
CACHE_DIR = ("eval", "cache")


@dataclass
class TestSet:
    """A named list of (source, reference) pairs and where it came from."""

    name: str
    pairs: list[Pair]
    origin: str

    @property
    def sources(self) -> list[str]:
        return [p.src for p in self.pairs]

    @property
    def references(self) -> list[str]:
        return [p.tgt for p in self.pairs]

    @property
    def digest(self) -> str:
        """Fingerprint of sources and references (rows with equal digests can be compared)."""
        return fingerprint(self.sources, self.references)


@dataclass
class EvalRow:
    """One model on one test set with one decoding setting.

    `scores` maps a metric to `Score.to_dict()` (metric, score, signature, text). With two or more
    models and bootstrap resampling, `significance` maps a metric to the mean and 95% confidence
    interval of the bootstrap resamples and the p-value against `baseline` (None for the baseline
    itself), with the signature of the paired test.
    """

    model: str
    run_dir: str | None
    test_set: str
    test_data: str
    test_digest: str
    sentences: int
    decode: dict
    scores: dict[str, dict]
    length_ratio: float
    sys_len: int
    ref_len: int
    seconds: float
    sentences_per_s: float
    cached: bool = False
    cache_key: str | None = None
    baseline: str | None = None
    significance: dict[str, dict] = field(default_factory=dict)
    length_buckets: list[dict] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    note: str = ""
    # Per-sentence data: kept in memory, written to files, left out of `to_dict`.
    hypotheses: list[str] = field(default_factory=list, repr=False)
    sentence_scores: list[dict] = field(default_factory=list, repr=False)
    pairs: list[Pair] = field(default_factory=list, repr=False)

    @property
    def beam_size(self) -> int:
        return self.decode["beam_size"]

    @property
    def length_penalty(self) -> float:
        return self.decode["length_penalty"]

    @property
    def setting(self) -> str:
        """The decoding setting as shown in tables, e.g. `beam=5 lp=0.6`."""
        return f"beam={self.beam_size} lp={self.length_penalty:g}"

    @property
    def references(self) -> list[str]:
        return [p.tgt for p in self.pairs]

    def score(self, metric: str) -> float:
        return self.scores[metric]["score"]

    def to_dict(self, hypotheses: bool = False) -> dict:
        skip = {"hypotheses", "sentence_scores", "pairs"}
        out = {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip
        }
        out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in out.items()}
        out["scores"] = {k: dict(v) for k, v in self.scores.items()}
        out["significance"] = {k: dict(v) for k, v in self.significance.items()}
        if hypotheses:
            out["hypotheses"] = list(self.hypotheses)
        return out


# -- test sets -------------------------------------------------------------------------------------
def _stem(path: str | Path) -> str:
    name = Path(path).name
    for suffix in (".gz", ".tsv", ".txt"):
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
    return name


def parse_test_spec(spec: str) -> tuple[str, str]:
    """`NAME=FILE.tsv`, `NAME=SRC_FILE,REF_FILE`, or a bare `FILE` (named by its stem) -> (name, files)."""
    spec = str(spec).strip()
    if not spec:
        raise ValueError("--test: empty test set; use NAME=FILE.tsv or NAME=SRC_FILE,REF_FILE")
    if "=" in spec and not Path(spec).is_file():
        name, _, files = spec.partition("=")
        name, files = name.strip(), files.strip()
        if not name or not files:
            raise ValueError(f"--test {spec!r}: expected NAME=FILE.tsv or NAME=SRC_FILE,REF_FILE")
        return name, files
    return _stem(spec.split(",")[0]), spec


def load_test_set(name: str, spec: Any) -> TestSet:
    """Read a test set: a TSV path, `SRC_FILE,REF_FILE` (or a pair of paths), or a list of pairs.

    Raises:
        CorpusError: a file is missing or malformed, aligned files differ in length, or the set
            is empty; the message names the file (and line).
    """
    if isinstance(spec, (str, Path)):
        text = str(spec)
        if "," in text and not Path(text).is_file():
            files = [f.strip() for f in text.split(",")]
            if len(files) != 2 or not all(files):
                raise CorpusError(f"test set {name!r}: expected SRC_FILE,REF_FILE, got {text!r}")
            pairs, origin = read_text_pair(*files), ",".join(files)
        else:
            pairs, origin = read_tsv(text), text
    elif (
        isinstance(spec, (tuple, list))
        and len(spec) == 2
        and all(isinstance(s, (str, Path)) for s in spec)
        and all(isinstance(s, Path) or Path(s).is_file() for s in spec)
    ):
        pairs, origin = read_text_pair(*spec), ",".join(map(str, spec))
    else:
        try:
            pairs = [p if isinstance(p, Pair) else Pair(str(p[0]), str(p[1])) for p in spec]
        except (TypeError, IndexError, KeyError):
            raise ValueError(
                f"test set {name!r}: expected a file path, 'SRC_FILE,REF_FILE' or a list of (source, reference) pairs"
            ) from None
        origin = "<memory>"
    if not pairs:
        raise CorpusError(f"{origin}: test set {name!r} has no sentence pairs")
    return TestSet(name, pairs, origin)


# -- runs ------------------------------------------------------------------------------------------
@dataclass
class _Run:
    name: str
    run_dir: Path | None
    decode: Any  # translator.config.DecodeConfig
    translator: Any = None
    digest: str | None = None  # model and tokenizers, for the hypothesis cache
    owned: bool = False  # loaded here (and released when done)
    warmed: set = field(default_factory=set)  # decoding settings already traced

    def get_translator(self):
        if self.translator is None:
            from translator.translate import Translator

            self.translator = Translator.load(self.run_dir)
            self.owned = True
        return self.translator

    def release(self) -> None:
        if self.owned:
            self.translator = None
            self.warmed.clear()


def _model_not_found(message: str) -> Exception:
    from translator.rundir import ModelNotFoundError

    return ModelNotFoundError(message)


def _open_run(run_dir: str | Path, name: str) -> _Run:
    import yaml

    from translator.config import ConfigError, config_from_dict

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise _model_not_found(f"run directory not found: {run_dir}")
    for path in (run_dir / "model.keras", run_dir / "config.yaml"):
        if not path.is_file():
            raise _model_not_found(
                f"{path} not found: {run_dir} has no trained model; run the `train` stage first: "
                f"translator run CONFIG --run-dir {run_dir}"
            )
    config_path = run_dir / "config.yaml"
    try:
        config = config_from_dict(yaml.safe_load(config_path.read_text(encoding="utf-8")) or {})
    except (ConfigError, yaml.YAMLError) as e:
        raise ConfigError(f"{config_path}: {e}") from None
    tok_dir = run_dir / "tokenizers"
    tokenizers = (
        {p.name: file_digest(p) for p in sorted(tok_dir.iterdir()) if p.is_file()}
        if tok_dir.is_dir()
        else {}
    )
    digest = fingerprint(file_digest(run_dir / "model.keras"), tokenizers)
    return _Run(name, run_dir, config.decode, digest=digest)


def _resolve_runs(runs: Iterable[Any]) -> list[_Run]:
    """Run directories, or (name, Translator) pairs; names made unique."""
    if isinstance(runs, (str, Path)):
        runs = [runs]
    out: list[_Run] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(runs):
        if isinstance(item, (str, Path)):
            name = Path(item).resolve().name or f"model{i + 1}"
            run = _open_run(item, name)
        elif isinstance(item, tuple) and len(item) == 2 and hasattr(item[1], "translate"):
            run = _Run(str(item[0]), None, item[1].decode, translator=item[1])
        elif hasattr(item, "translate"):
            run = _Run(f"model{i + 1}", None, item.decode, translator=item)
        else:
            raise ValueError(
                f"runs[{i}]: expected a run directory or a (name, Translator) pair, got {item!r}"
            )
        seen[run.name] = seen.get(run.name, 0) + 1
        if seen[run.name] > 1:
            run.name = f"{run.name}-{seen[run.name]}"
        out.append(run)
    if not out:
        raise ValueError("no runs to evaluate")
    return out


def _load_test_sets(test_sets: Any) -> dict[str, TestSet]:
    if isinstance(test_sets, Mapping):
        items = [(str(k), v) for k, v in test_sets.items()]
    else:
        if isinstance(test_sets, (str, Path)):
            test_sets = [test_sets]
        items = [parse_test_spec(str(s)) for s in test_sets]
    out: dict[str, TestSet] = {}
    for name, spec in items:
        if name in out:
            raise ValueError(f"test set name {name!r} is given twice; name them NAME=FILE")
        out[name] = load_test_set(name, spec)
    return out


def _default_test_set(run: _Run) -> TestSet:
    if run.run_dir is None:
        raise ValueError(f"model {run.name!r} has no run directory: give test_sets")
    path = run.run_dir / "data" / "test.tsv"
    if not path.is_file():
        raise CorpusError(f"{path} not found: give --test NAME=FILE.tsv or run the `prepare` stage")
    return load_test_set("test", path)


def _decode_settings(
    run: _Run, beam_size: int | None, length_penalty: float | None, batch_size: int | None
) -> dict:
    given = {"beam_size": beam_size, "length_penalty": length_penalty, "batch_size": batch_size}
    settings = dataclasses.replace(
        run.decode, n_best=1, **{k: v for k, v in given.items() if v is not None}
    )
    if settings.beam_size < 1:
        raise ValueError(f"beam size must be at least 1, got {settings.beam_size}")
    if settings.batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {settings.batch_size}")
    return dataclasses.asdict(settings)


# -- hypothesis cache ------------------------------------------------------------------------------
def _cache_key(run: _Run, test: TestSet, settings: dict) -> str:
    return fingerprint("eval-hypotheses", run.digest, fingerprint(test.sources), settings)


def _cache_paths(run_dir: Path, key: str) -> tuple[Path, Path]:
    base = run_dir.joinpath(*CACHE_DIR)
    return base / f"{key}.txt", base / f"{key}.json"


def _read_cache(run_dir: Path, key: str, n: int) -> tuple[list[str], dict] | None:
    txt, meta_path = _cache_paths(run_dir, key)
    if not (txt.is_file() and meta_path.is_file()):
        return None
    try:
        meta = read_json(meta_path)
        hyps = txt.read_text(encoding="utf-8").split("\n")[:-1]
    except (OSError, ValueError):
        return None
    if len(hyps) != n or meta.get("sentences") != n:
        return None
    return hyps, meta


def _write_cache(run_dir: Path, key: str, hyps: list[str], meta: dict) -> None:
    txt, meta_path = _cache_paths(run_dir, key)
    atomic_write_text(txt, "".join(h.replace("\n", " ") + "\n" for h in hyps))
    atomic_write_json(meta_path, meta)


# -- scoring ---------------------------------------------------------------------------------------
def sentence_scores(hypotheses: Sequence[str], references: Sequence[str]) -> list[dict]:
    """Sentence BLEU (effective order) and chrF of every hypothesis."""
    from sacrebleu.metrics import BLEU, CHRF

    bleu_, chrf = BLEU(effective_order=True), CHRF()
    return [
        {
            "bleu": float(bleu_.sentence_score(h, [r]).score),
            "chrf": float(chrf.sentence_score(h, [r]).score),
        }
        for h, r in zip(hypotheses, references, strict=True)
    ]


def sentence_signatures() -> dict[str, str]:
    from sacrebleu.metrics import BLEU, CHRF

    out = {}
    for name, metric in (("bleu", BLEU(effective_order=True)), ("chrf", CHRF())):
        metric.sentence_score("a", ["a"])
        out[name] = str(metric.get_signature())
    return out


def length_buckets(pairs: Sequence[Pair], hypotheses: Sequence[str]) -> list[dict]:
    """Corpus BLEU of the sentences in each source-length bucket (`LENGTH_BUCKETS`)."""
    from sacrebleu.metrics import BLEU

    lengths = [len(p.src.split()) for p in pairs]
    out = []
    for lo, hi, label in LENGTH_BUCKETS:
        idx = [i for i, n in enumerate(lengths) if n >= lo and (hi is None or n <= hi)]
        score = None
        if idx:
            score = float(
                BLEU()
                .corpus_score([hypotheses[i] for i in idx], [[pairs[i].tgt for i in idx]])
                .score
            )
        out.append(
            {
                "bucket": label,
                "min_words": lo,
                "max_words": hi,
                "sentences": len(idx),
                "bleu": score,
            }
        )
    return out


@contextlib.contextmanager
def _sacrebleu_seed(seed: int | None) -> Iterator[None]:
    """sacrebleu's resampling reads its seed from SACREBLEU_SEED (`none` = unseeded)."""
    old = os.environ.get("SACREBLEU_SEED")
    os.environ["SACREBLEU_SEED"] = "none" if seed is None else str(seed)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("SACREBLEU_SEED", None)
        else:
            os.environ["SACREBLEU_SEED"] = old


def _check_seed(seed: int | None) -> None:
    if seed is not None and (not isinstance(seed, int) or seed < 1):
        raise ValueError(
            f"seed must be a positive integer (sacrebleu treats 0 as unseeded), got {seed!r}"
        )


def paired_bootstrap(
    systems: Sequence[tuple[str, Sequence[str]]],
    references: Sequence[str],
    metrics: Sequence[str] = METRICS,
    n_samples: int = DEFAULT_BOOTSTRAP,
    seed: int | None = DEFAULT_SEED,
) -> dict[str, list[dict]]:
    """sacrebleu's paired bootstrap resampling (`sacrebleu --paired-bs`) of each system against the first.

    Args:
        systems: (name, hypotheses) pairs; the first is the baseline.
        references: one reference per sentence.
        metrics: names among `bleu`, `chrf`, `ter`.
        n_samples: bootstrap resamples.
        seed: RNG seed (None: unseeded).

    Returns:
        For each metric, one dict per system: `score`, `mean` and `ci` (the 95% confidence
        interval around the mean of the resampled scores), `p_value` (None for the baseline),
        `signature` (with the resampling count and seed), `n_samples`, `seed`.
    """
    from sacrebleu.significance import PairedTest

    if len(systems) < 2:
        raise ValueError("paired bootstrap resampling needs at least two systems")
    if n_samples < 1:
        raise ValueError(f"bootstrap resamples must be at least 1, got {n_samples}")
    _check_seed(seed)
    metrics = list(metrics)
    named = [(str(name), list(hyps)) for name, hyps in systems]
    for name, hyps in named:
        if len(hyps) != len(references):
            raise ValueError(f"{name}: {len(hyps)} hypotheses but {len(references)} references")
    with _sacrebleu_seed(seed):
        test = PairedTest(
            named,
            {m: _metric(m) for m in metrics},
            [list(references)],
            test_type="bs",
            n_samples=n_samples,
        )
        signatures, results = test()
    out = {}
    # PairedTest keys its results by sacrebleu's score names (BLEU, chrF2, TER), in the given order.
    for metric, key in zip(metrics, list(signatures), strict=True):
        out[metric] = [
            {
                "score": float(r.score),
                "mean": float(r.mean),
                "ci": float(r.ci),
                "p_value": None if r.p_value is None else float(r.p_value),
                "signature": str(signatures[key]),
                "n_samples": n_samples,
                "seed": seed,
            }
            for r in results[key]
        ]
    return out


def _add_significance(
    rows: list[EvalRow], metrics: list[str], n_samples: int, seed: int | None
) -> None:
    groups: dict[tuple, list[EvalRow]] = {}
    for row in rows:
        groups.setdefault((row.test_set, row.beam_size, row.length_penalty), []).append(row)
    for group in groups.values():
        if len(group) < 2:
            continue
        base = group[0]
        comparable = [base] + [r for r in group[1:] if r.test_digest == base.test_digest]
        for r in group[1:]:
            if r.test_digest != base.test_digest:
                r.note = f"not compared: test data differs from {base.model}'s"
        if len(comparable) < 2:
            continue
        result = paired_bootstrap(
            [(r.model, r.hypotheses) for r in comparable], base.references, metrics, n_samples, seed
        )
        for i, r in enumerate(comparable):
            r.baseline = base.model
            r.significance = {
                m: {k: v for k, v in result[m][i].items() if k != "score"} for m in metrics
            }


# -- evaluate --------------------------------------------------------------------------------------
def _check_metrics(metrics: Iterable[str]) -> list[str]:
    if isinstance(metrics, str):
        metrics = metrics.split(",")
    out = []
    for m in metrics:
        m = m.strip().lower()
        if m and m not in out:
            _metric(m)  # raises ValueError naming the valid choices
            out.append(m)
    if not out:
        raise ValueError("no metrics given; valid choices: bleu, chrf, ter")
    return out


def evaluate(
    runs: Iterable[Any],
    test_sets: Any = None,
    beam_sizes: Iterable[int] | None = (1,),
    metrics: Iterable[str] = METRICS,
    length_penalty: float | None = None,
    batch_size: int | None = None,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int | None = DEFAULT_SEED,
    output_dir: str | Path | None = None,
    cache: bool = True,
    log=None,
) -> list[EvalRow]:
    """Translate and score test sets with one or more trained runs.

    Args:
        runs: run directories (named by their directory name), or (name, Translator) pairs. The
            first is the baseline of the significance tests.
        test_sets: mapping name -> a TSV path, `"SRC_FILE,REF_FILE"`, or a list of (source,
            reference) pairs; or a list of `NAME=FILE` specs. None: each run's own test split
            (`RUN_DIR/data/test.tsv`, named `test`).
        beam_sizes: one row per beam size; None: each run's configured beam size.
        metrics: among `bleu`, `chrf`, `ter`.
        length_penalty, batch_size: decoding overrides (None: each run's config).
        bootstrap: resamples of sacrebleu's paired bootstrap test of each model against the
            first, per test set and decoding setting (0: no test; needs two or more models).
        seed: seed of the resampling (a positive integer; None: unseeded).
        output_dir: if given, write results.json, results.csv, per-row hypotheses, sentence
            scores and BLEU-by-length plots there (see `write_results`).
        cache: reuse and store hypotheses in `RUN_DIR/eval/cache/`, keyed by the model and
            tokenizer files, the test sources and the decoding settings.
        log: optional callable receiving progress messages.

    Returns:
        One `EvalRow` per model x test set x decoding setting, in that nesting order.

    Raises:
        ModelNotFoundError: a run directory has no trained model.
        CorpusError: a test file is missing or malformed (the message names file and line).
        ValueError: a bad argument.
    """
    metrics = _check_metrics(metrics)
    if bootstrap is None or bootstrap < 0:
        raise ValueError(f"bootstrap resamples must be 0 (off) or positive, got {bootstrap}")
    _check_seed(seed)
    beams: list[int | None] = (
        [None] if beam_sizes is None else list(dict.fromkeys(int(b) for b in beam_sizes))
    )
    if not beams:
        raise ValueError("no beam sizes given")
    resolved = _resolve_runs(runs)
    shared = _load_test_sets(test_sets) if test_sets else None
    tests = {
        id(run): list(shared.values()) if shared else [_default_test_set(run)] for run in resolved
    }
    settings = {
        id(run): [_decode_settings(run, b, length_penalty, batch_size) for b in beams]
        for run in resolved
    }

    rows: list[EvalRow] = []
    for run in resolved:
        try:
            for test in tests[id(run)]:
                for decode in settings[id(run)]:
                    rows.append(_evaluate_one(run, test, decode, metrics, cache, log))
        finally:
            run.release()
    if bootstrap and len(resolved) > 1:
        _add_significance(rows, metrics, bootstrap, seed)
    if output_dir is not None:
        write_results(rows, output_dir, metrics=metrics, bootstrap=bootstrap, seed=seed)
    return rows


def _evaluate_one(
    run: _Run, test: TestSet, decode: dict, metrics: list[str], cache: bool, log
) -> EvalRow:
    from sacrebleu.metrics import BLEU

    label = f"beam={decode['beam_size']} lp={decode['length_penalty']:g}"
    key = _cache_key(run, test, decode) if run.run_dir is not None else None
    hit = _read_cache(run.run_dir, key, len(test.pairs)) if cache and key else None
    if hit is not None:
        hyps, meta = hit
        seconds, sps = float(meta["seconds"]), float(meta["sentences_per_s"])
        if log:
            log(f"{run.name} | {test.name} | {label}: cached hypotheses ({key})")
    else:
        if log:
            log(f"{run.name} | {test.name} | {label}: translating {len(test.pairs)} sentences")
        translator = run.get_translator()
        options = {
            "beam_size": decode["beam_size"],
            "n_best": 1,
            "length_penalty": decode["length_penalty"],
            "batch_size": decode["batch_size"],
        }
        warm_key = (decode["beam_size"], decode["length_penalty"])
        if warm_key not in run.warmed:
            # Trace the compiled search once so that sentences/s measures decoding, not tracing.
            translator.translate([s for s in test.sources if s.strip()][:2], **options)
            run.warmed.add(warm_key)
        t0 = time.perf_counter()
        hyps = translator.translate(test.sources, **options)
        seconds = time.perf_counter() - t0
        sps = len(hyps) / max(seconds, 1e-9)
        if cache and key:
            meta = {
                "key": key,
                "model": run.digest,
                "test_data": test.origin,
                "decode": decode,
                "sentences": len(hyps),
                "seconds": round(seconds, 3),
                "sentences_per_s": round(sps, 2),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            }
            _write_cache(run.run_dir, key, hyps, meta)
    refs = test.references
    scores = corpus_scores(hyps, refs, metrics)
    bleu_score = BLEU().corpus_score(hyps, [refs])
    return EvalRow(
        model=run.name,
        run_dir=str(run.run_dir) if run.run_dir is not None else None,
        test_set=test.name,
        test_data=test.origin,
        test_digest=test.digest,
        sentences=len(test.pairs),
        decode=decode,
        scores={k: v.to_dict() for k, v in scores.items()},
        length_ratio=bleu_score.sys_len / bleu_score.ref_len if bleu_score.ref_len else math.nan,
        sys_len=int(bleu_score.sys_len),
        ref_len=int(bleu_score.ref_len),
        seconds=round(seconds, 3),
        sentences_per_s=round(sps, 2),
        cached=hit is not None,
        cache_key=key,
        length_buckets=length_buckets(test.pairs, hyps),
        hypotheses=list(hyps),
        sentence_scores=sentence_scores(hyps, refs),
        pairs=list(test.pairs),
    )


# -- output files ----------------------------------------------------------------------------------
def _safe(part: str) -> str:
    return "".join(c if c.isalnum() or c in "._+-" else "_" for c in part) or "_"


def _setting_label(row: EvalRow, with_lp: bool) -> str:
    label = f"beam{row.beam_size}"
    return label + (f"-lp{row.length_penalty:g}" if with_lp else "")


def _row_stems(rows: list[EvalRow]) -> list[str]:
    """File stems: the test set name, qualified by model and setting only when these vary."""
    many_models = len({r.model for r in rows}) > 1
    many_settings = len({(r.beam_size, r.length_penalty) for r in rows}) > 1
    many_lps = len({r.length_penalty for r in rows}) > 1
    stems, used = [], set()
    for r in rows:
        parts = ([r.model] if many_models else []) + [r.test_set]
        if many_settings:
            parts.append(_setting_label(r, many_lps))
        stem = ".".join(_safe(p) for p in parts)
        base, k = stem, 2
        while stem in used:
            stem, k = f"{base}-{k}", k + 1
        used.add(stem)
        stems.append(stem)
    return stems


def _plot_groups(rows: list[EvalRow]) -> dict[str, list[EvalRow]]:
    many_settings = len({(r.beam_size, r.length_penalty) for r in rows}) > 1
    many_lps = len({r.length_penalty for r in rows}) > 1
    groups: dict[str, list[EvalRow]] = {}
    for r in rows:
        parts = [r.test_set] + ([_setting_label(r, many_lps)] if many_settings else [])
        groups.setdefault(".".join(_safe(p) for p in parts), []).append(r)
    return groups


CSV_FIELDS = [
    "model",
    "run_dir",
    "test_set",
    "test_data",
    "sentences",
    "beam_size",
    "length_penalty",
    "batch_size",
]


def _csv_fields(metrics: list[str]) -> list[str]:
    per_metric = [
        f"{m}{suffix}"
        for m in metrics
        for suffix in ("", "_mean", "_ci", "_p_value", "_signature", "_bootstrap_signature")
    ]
    tail = [
        "length_ratio",
        "sys_len",
        "ref_len",
        "seconds",
        "sentences_per_s",
        "cached",
        "baseline",
        "note",
    ]
    return CSV_FIELDS + per_metric + tail + ["hypotheses_file", "sentences_file"]


def _csv_row(row: EvalRow, metrics: list[str]) -> dict:
    out = {
        "model": row.model,
        "run_dir": row.run_dir or "",
        "test_set": row.test_set,
        "test_data": row.test_data,
        "sentences": row.sentences,
        "beam_size": row.beam_size,
        "length_penalty": row.length_penalty,
        "batch_size": row.decode["batch_size"],
        "length_ratio": row.length_ratio,
        "sys_len": row.sys_len,
        "ref_len": row.ref_len,
        "seconds": row.seconds,
        "sentences_per_s": row.sentences_per_s,
        "cached": row.cached,
        "baseline": row.baseline or "",
        "note": row.note,
        "hypotheses_file": row.files.get("hypotheses", ""),
        "sentences_file": row.files.get("sentences", ""),
    }
    for m in metrics:
        sig = row.significance.get(m, {})
        p = sig.get("p_value")
        out[m] = row.scores[m]["score"]
        out[f"{m}_signature"] = row.scores[m]["signature"]
        out[f"{m}_mean"] = sig.get("mean", "")
        out[f"{m}_ci"] = sig.get("ci", "")
        out[f"{m}_p_value"] = "" if p is None else p
        out[f"{m}_bootstrap_signature"] = sig.get("signature", "")
    return out


def _cell(text: str) -> str:
    return text.replace("\t", " ").replace("\n", " ")


def write_results(
    rows: list[EvalRow],
    output_dir: str | Path,
    metrics: Sequence[str] | None = None,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int | None = DEFAULT_SEED,
) -> dict[str, Path]:
    """Write the evaluation into `output_dir` (atomically, file by file).

    Files: `results.json` and `results.csv` (all rows, with every score's sacrebleu signature);
    per row `<stem>.hyp.txt`, `<stem>.scores.json` and `<stem>.sentences.tsv` (source, reference,
    hypothesis, sentence BLEU, sentence chrF), where the stem is the test set name, prefixed by
    the model when there are several and suffixed by the decoding setting when there are several;
    per test set and decoding setting `<test>[.<setting>].bleu-by-length.png`.
    """
    out = Path(output_dir)
    metrics = list(metrics) if metrics else [m for m in METRICS if rows and m in rows[0].scores]
    for row, stem in zip(rows, _row_stems(rows), strict=True):
        row.files = {
            "hypotheses": str(out / f"{stem}.hyp.txt"),
            "scores": str(out / f"{stem}.scores.json"),
            "sentences": str(out / f"{stem}.sentences.tsv"),
        }
    groups = _plot_groups(rows)
    for stem, group in groups.items():
        for row in group:
            row.files["length_plot"] = str(out / f"{stem}.bleu-by-length.png")
    for row in rows:
        atomic_write_text(row.files["hypotheses"], "".join(_cell(h) + "\n" for h in row.hypotheses))
        atomic_write_json(row.files["scores"], row.to_dict())
        lines = ["source\treference\thypothesis\tsentence_bleu\tsentence_chrf\n"]
        for p, h, s in zip(row.pairs, row.hypotheses, row.sentence_scores, strict=True):
            lines.append(
                f"{_cell(p.src)}\t{_cell(p.tgt)}\t{_cell(h)}\t{s['bleu']:.4f}\t{s['chrf']:.4f}\n"
            )
        atomic_write_text(row.files["sentences"], "".join(lines))
    for stem, group in groups.items():
        title = f"BLEU by source length: {group[0].test_set}, {group[0].setting}"
        plot_bleu_by_length(group, out / f"{stem}.bleu-by-length.png", title=title)
    results = {
        "metrics": metrics,
        "bootstrap": bootstrap if len({r.model for r in rows}) > 1 else 0,
        "seed": seed,
        "sentence_signatures": sentence_signatures(),
        "rows": [r.to_dict() for r in rows],
    }
    atomic_write_json(out / "results.json", results)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=_csv_fields(metrics), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(_csv_row(row, metrics))
    atomic_write_text(out / "results.csv", buf.getvalue())
    return {"json": out / "results.json", "csv": out / "results.csv"}


# -- plots -----------------------------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_bleu_by_length(
    rows: Sequence[EvalRow], path: str | Path, title: str | None = None
) -> None:
    """Grouped bars: corpus BLEU per source-length bucket, one colour per row (model)."""
    plt = _pyplot()
    buckets = rows[0].length_buckets
    keep = [i for i in range(len(buckets)) if any(r.length_buckets[i]["sentences"] for r in rows)]
    width = 0.8 / max(len(rows), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(keep) + 2), 4))
    for j, row in enumerate(rows):
        xs = [k + (j - (len(rows) - 1) / 2) * width for k in range(len(keep))]
        ys = [row.length_buckets[i]["bleu"] or 0.0 for i in keep]
        ax.bar(xs, ys, width, label=row.model)
    ax.set_xticks(range(len(keep)))
    ax.set_xticklabels([f"{buckets[i]['bucket']}\n(n={buckets[i]['sentences']})" for i in keep])
    ax.set_xlabel("source length (words)")
    ax.set_ylabel("BLEU")
    if title:
        ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def read_metrics_log(run_dir: str | Path) -> list[dict]:
    """The rows of `RUN_DIR/logs/metrics.csv` (one per epoch)."""
    path = Path(run_dir) / "logs" / "metrics.csv"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: {run_dir} has no training log; run the `train` stage first"
        )
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        fields = reader.fieldnames or []
    for col in ("epoch", "loss"):
        if col not in fields:
            raise ValueError(f"{path}: not a training log (no {col!r} column)")
    if not rows:
        raise ValueError(f"{path}: no epochs logged yet")
    return rows


def plot_runs(run_dirs: Iterable[str | Path], path: str | Path) -> Path:
    """Learning curves (loss and validation BLEU by epoch) of several runs on one chart."""
    histories: dict[str, list[dict]] = {}
    for run_dir in run_dirs:
        name = Path(run_dir).resolve().name
        k, base = 2, name
        while name in histories:
            name, k = f"{base}-{k}", k + 1
        histories[name] = read_metrics_log(run_dir)
    if not histories:
        raise ValueError("no run directories given")
    from translator.plots import plot_learning_curves

    plot_learning_curves(histories, Path(path))
    return Path(path)


# -- text output -----------------------------------------------------------------------------------
def _metric_cell(row: EvalRow, metric: str) -> str:
    text = f"{row.score(metric):.2f}"
    sig = row.significance.get(metric)
    if sig:
        text += f" ({sig['mean']:.2f} ± {sig['ci']:.2f})"
        if sig["p_value"] is not None:
            text += f" p={sig['p_value']:.4f}" + ("*" if sig["p_value"] < 0.05 else "")
    return text


def _row_note(row: EvalRow) -> str:
    notes = []
    if row.significance and row.baseline == row.model:
        notes.append("baseline")
    if row.cached:
        notes.append("cached")
    if row.note:
        notes.append(row.note)
    return ", ".join(notes)


def format_table(rows: Sequence[EvalRow]) -> str:
    """A plain-text table: one line per row, columns separated by at least two spaces."""
    if not rows:
        return "(no results)"
    metrics = [m for m in METRICS if m in rows[0].scores]
    with_ci = any(r.significance for r in rows)
    header = ["model", "test", "decoding"]
    header += [METRIC_LABELS[m] + (" (mean ± 95% CI)" if with_ci else "") for m in metrics]
    header += ["ratio", "sent/s", "note"]
    body = [
        [r.model, r.test_set, r.setting]
        + [_metric_cell(r, m) for m in metrics]
        + [f"{r.length_ratio:.3f}", f"{r.sentences_per_s:.1f}", _row_note(r)]
        for r in rows
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def fmt(cells):
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    lines = [fmt(header), "  ".join("-" * w for w in widths)] + [fmt(line) for line in body]
    if with_ci:
        sig = next(r.significance for r in rows if r.significance)
        first = next(iter(sig.values()))
        lines.append(
            f"mean ± 95% CI and p-values: sacrebleu paired bootstrap resampling ({first['n_samples']} resamples, "
            f"seed {first['seed']}) of each model against the first ({rows[0].model}) on the same test set "
            "and decoding; * p < 0.05"
        )
    return "\n".join(lines)


def format_signatures(rows: Sequence[EvalRow]) -> str:
    """The distinct sacrebleu signatures of the scores (and of the paired tests) in `rows`."""
    seen: dict[str, None] = {}
    for r in rows:
        for m, s in r.scores.items():
            seen[f"{METRIC_LABELS.get(m, m)}: {s['signature']}"] = None
        for m, s in r.significance.items():
            seen[f"{METRIC_LABELS.get(m, m)} (paired bootstrap): {s['signature']}"] = None
    return "\n".join(["signatures:"] + [f"  {line}" for line in seen])


def worst_sentences(row: EvalRow, k: int) -> list[int]:
    """Indices of the `k` worst sentences of a row, by sentence BLEU, then sentence chrF."""
    order = sorted(
        range(len(row.sentence_scores)),
        key=lambda i: (row.sentence_scores[i]["bleu"], row.sentence_scores[i]["chrf"], i),
    )
    return order[: max(k, 0)]


def format_worst(rows: Sequence[EvalRow], k: int) -> str:
    blocks = []
    for r in rows:
        idx = worst_sentences(r, k)
        lines = [
            f"worst {len(idx)} of {r.model} | {r.test_set} | {r.setting} (by sentence BLEU, then chrF):"
        ]
        for i in idx:
            s = r.sentence_scores[i]
            lines.append(f"  #{i + 1}  BLEU {s['bleu']:.2f}  chrF {s['chrf']:.2f}")
            lines.append(f"      src: {r.pairs[i].src}")
            lines.append(f"      ref: {r.pairs[i].tgt}")
            lines.append(f"      hyp: {r.hypotheses[i]}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
