"""Evaluation of trained runs on test sets: `evaluate` and its result rows, `EvalRow`.

`evaluate` translates test sets with one or more trained runs and several decoding settings,
scores them (BLEU, chrF, TER with their sacrebleu signatures), compares every model with the first
one by sacrebleu's paired bootstrap resampling, scores every sentence, caches hypotheses in
`RUN_DIR/eval/cache/` and can write the results (`results.json`, `results.csv`, per-row hypotheses
and sentence scores, BLEU-by-length plots; see `report.py`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from translator.data.corpus import Pair
from translator.evaluation.cache import cache_key, read_cache, write_cache
from translator.evaluation.metrics import (
    METRICS,
    bleu_lengths,
    check_metrics,
    corpus_scores,
    length_buckets,
    sentence_scores,
)
from translator.evaluation.report import write_results
from translator.evaluation.significance import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_SEED,
    MAX_BOOTSTRAP,
    add_significance,
    check_seed,
)
from translator.evaluation.testsets import TestSet, default_test_set, load_test_sets
from translator.io import file_digest, fingerprint
from translator.rundir import RunDir


@dataclass
class EvalRow:
    """One model on one test set with one decoding setting.

    `model` is the model's name (an ensemble's: its runs' names joined by `+`) and `run_dir` its
    run directory (an ensemble's joined by `+`; None for a `Translator` given in Python).
    `decode` is the `DecodeConfig` used, as a dict. `scores` maps a metric to `Score.to_dict()`
    (metric, score, signature, text). With two or more models and bootstrap resampling,
    `significance` maps a metric to the mean and 95% confidence interval of the bootstrap
    resamples and the p-value against `baseline` (None for the baseline itself), with the
    signature of the paired test. `length_buckets` is `metrics.length_buckets` of the row; `files`
    names what `write_results` wrote for it.
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
        return _setting(self.decode)

    @property
    def references(self) -> list[str]:
        return [p.tgt for p in self.pairs]

    def score(self, metric: str) -> float:
        return self.scores[metric]["score"]

    def to_dict(self, hypotheses: bool = False) -> dict:
        """The row as JSON-ready data, without the per-sentence lists (but with `hypotheses`
        if asked)."""
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


def _setting(decode: dict) -> str:
    reward = decode.get("word_reward") or 0.0
    label = f"beam={decode['beam_size']} lp={decode['length_penalty']:g}"
    return label + (f" wr={reward:g}" if reward else "")


# -- runs ------------------------------------------------------------------------------------------
@dataclass
class _Run:
    name: str
    run_dir: RunDir | None  # its cache and own test split (an ensemble's: its first member's)
    decode: Any  # translator.config.DecodeConfig
    translator: Any = None
    digest: str | None = None  # model(s) and tokenizers, for the hypothesis cache
    owned: bool = False  # loaded here (and released when done)
    warmed: set = field(default_factory=set)  # decoding settings already traced
    members: list[RunDir] = field(default_factory=list)  # two or more: an ensemble

    @property
    def location(self) -> str | None:
        """The run directory, or an ensemble's joined by `+`."""
        return "+".join(str(m.path) for m in self.members) if self.members else None

    def get_translator(self):
        if self.translator is None:
            from translator.translate import Translator

            self.translator = Translator.load(
                self.members if len(self.members) > 1 else self.run_dir
            )
            self.owned = True
        return self.translator

    def release(self) -> None:
        if self.owned:
            self.translator = None
            self.warmed.clear()


def model_digest(run: RunDir) -> str:
    """Fingerprint of a run's model file and tokenizer files (what its hypotheses depend on)."""
    tok_dir = run.tokenizers
    tokenizers = (
        {p.name: file_digest(p) for p in sorted(tok_dir.iterdir()) if p.is_file()}
        if tok_dir.is_dir()
        else {}
    )
    return fingerprint(file_digest(run.model_file), tokenizers)


def _open_run(run_dirs: list[str | Path | RunDir], name: str) -> _Run:
    """One run directory, or several: an ensemble (decoded with the first one's settings, as
    `Translator.load` does; its cache key covers every member's model)."""
    members = [RunDir(r).require_trained() for r in run_dirs]
    first = members[0]
    digests = [model_digest(m) for m in members]
    digest = digests[0] if len(digests) == 1 else fingerprint("ensemble", digests)
    return _Run(name, first, first.load_config().decode, digest=digest, members=members)


def _resolve_runs(runs: Iterable[Any]) -> list[_Run]:
    """Run directories, lists of run directories (ensembles, named `A+B`), or (name,
    Translator) pairs; names made unique."""
    if isinstance(runs, (str, Path, RunDir)):
        runs = [runs]
    out: list[_Run] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(runs):
        if isinstance(item, (str, Path, RunDir)):
            name = RunDir(item).name or f"model{i + 1}"
            run = _open_run([item], name)
        elif isinstance(item, tuple) and len(item) == 2 and hasattr(item[1], "translate"):
            run = _Run(str(item[0]), None, item[1].decode, translator=item[1])
        elif (
            isinstance(item, list | tuple)
            and item
            and all(isinstance(m, (str, Path, RunDir)) for m in item)
        ):
            run = _open_run(list(item), "+".join(RunDir(m).name for m in item))
        elif hasattr(item, "translate"):
            run = _Run(f"model{i + 1}", None, item.decode, translator=item)
        else:
            raise ValueError(
                f"runs[{i}]: expected a run directory, a list of them (an ensemble) or a "
                f"(name, Translator) pair, got {item!r}"
            )
        seen[run.name] = seen.get(run.name, 0) + 1
        if seen[run.name] > 1:
            run.name = f"{run.name}-{seen[run.name]}"
        out.append(run)
    if not out:
        raise ValueError("no runs to evaluate")
    return out


def _own_test_set(run: _Run) -> TestSet:
    if run.run_dir is None:
        raise ValueError(f"model {run.name!r} has no run directory: give test_sets")
    return default_test_set(run.run_dir)


def _decode_settings(
    run: _Run,
    beam_size: int | None,
    length_penalty: float | None,
    batch_size: int | None,
    word_reward: float | None = None,
    xla: bool | None = None,
) -> dict:
    """The run's decoding settings with the given overrides, one hypothesis per sentence;
    `DecodeConfig` checks them (`ConfigError`, a `ValueError`, naming the option)."""
    given = {
        "beam_size": beam_size,
        "length_penalty": length_penalty,
        "batch_size": batch_size,
        "word_reward": word_reward,
        "xla": xla,
    }
    settings = run.decode.with_overrides(n_best=1, **given)
    return dataclasses.asdict(settings)


# -- evaluate --------------------------------------------------------------------------------------
def evaluate(
    runs: Iterable[Any],
    test_sets: Any = None,
    beam_sizes: Iterable[int] | None = (1,),
    metrics: Iterable[str] = METRICS,
    length_penalty: float | None = None,
    batch_size: int | None = None,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    word_reward: float | None = None,
    seed: int | None = DEFAULT_SEED,
    xla: bool | None = None,
    output_dir: str | Path | None = None,
    cache: bool = True,
    log: Callable[[str], Any] | None = None,
) -> list[EvalRow]:
    """Translate and score test sets with one or more trained runs.

    Args:
        runs: run directories (paths or `RunDir`s, named by their directory name), lists of run
            directories (an ensemble: one system, named `A+B`, decoded with the mean of its
            models' log-probabilities; see `Translator.load`), or (name, Translator) pairs. The
            first is the baseline of the significance tests.
        test_sets: mapping name -> a TSV path, `"SRC_FILE,REF_FILE"`, or a list of (source,
            reference) pairs; or a list of `NAME=FILE` specs. None: each run's own test split
            (`RUN_DIR/data/test.tsv`, named `test`).
        beam_sizes: one row per beam size; None: each run's configured beam size.
        metrics: among `bleu`, `chrf`, `ter`.
        length_penalty, batch_size, word_reward, xla: decoding overrides (None: each run's
            config).
        bootstrap: resamples of sacrebleu's paired bootstrap test of each model against the
            first, per test set and decoding setting (0: no test; needs two or more models).
        seed: seed of the resampling (a positive integer; None: unseeded).
        output_dir: if given, write results.json, results.csv, per-row hypotheses, sentence
            scores and BLEU-by-length plots there (see `write_results`).
        cache: reuse and store hypotheses in `RUN_DIR/eval/cache/` (an ensemble's first run's),
            keyed by the model (every member's) and tokenizer files, the test sources and the
            decoding settings.
        log: optional callable receiving progress messages.

    Returns:
        One `EvalRow` per model x test set x decoding setting, in that nesting order.

    Raises:
        ModelNotFoundError: a run directory has no trained model.
        CorpusError: a test file is missing or malformed (the message names file and line).
        ValueError: a bad argument.
    """
    metrics = check_metrics(metrics)
    if (
        isinstance(bootstrap, bool)
        or not isinstance(bootstrap, int)
        or not 0 <= bootstrap <= MAX_BOOTSTRAP
    ):
        raise ValueError(
            f"bootstrap resamples must be a whole number from 0 (off) to {MAX_BOOTSTRAP}, "
            f"got {bootstrap!r}"
        )
    check_seed(seed)
    beams: list[int | None] = (
        [None] if beam_sizes is None else list(dict.fromkeys(int(b) for b in beam_sizes))
    )
    if not beams:
        raise ValueError("no beam sizes given")
    resolved = _resolve_runs(runs)
    shared = load_test_sets(test_sets) if test_sets else None
    tests = {id(run): list(shared.values()) if shared else [_own_test_set(run)] for run in resolved}
    settings = {
        id(run): [
            _decode_settings(run, b, length_penalty, batch_size, word_reward, xla) for b in beams
        ]
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
        add_significance(rows, metrics, bootstrap, seed)
    if output_dir is not None:
        write_results(rows, output_dir, metrics=metrics, bootstrap=bootstrap, seed=seed)
    return rows


def _translate(run: _Run, test: TestSet, decode: dict) -> tuple[list[str], float]:
    """Hypotheses of the test sources and the seconds decoding took (tracing excluded)."""
    translator = run.get_translator()
    options = {k: decode[k] for k in ("beam_size", "length_penalty", "batch_size")}
    options["word_reward"] = decode.get("word_reward", 0.0)
    options["xla"] = decode.get("xla", False)
    warm_key = (decode["beam_size"], decode["length_penalty"])
    if warm_key not in run.warmed:
        # Trace the compiled search once so that sentences/s measures decoding, not tracing.
        translator.translate([s for s in test.sources if s.strip()][:2], **options)
        run.warmed.add(warm_key)
    t0 = time.perf_counter()
    hyps = translator.translate(test.sources, **options)
    return hyps, time.perf_counter() - t0


def _evaluate_one(
    run: _Run,
    test: TestSet,
    decode: dict,
    metrics: list[str],
    cache: bool,
    log: Callable[[str], Any] | None,
) -> EvalRow:
    """One row: hypotheses from the cache or the model, then corpus, length and sentence scores."""
    label = _setting(decode)
    key = cache_key(run.digest, test.sources, decode) if run.run_dir is not None else None
    hit = read_cache(run.run_dir, key, len(test.pairs)) if cache and key else None
    if hit is not None:
        hyps, meta = hit
        seconds, sps = float(meta["seconds"]), float(meta["sentences_per_s"])
        if log:
            log(f"{run.name} | {test.name} | {label}: cached hypotheses ({key})")
    else:
        if log:
            log(f"{run.name} | {test.name} | {label}: translating {len(test.pairs)} sentences")
        hyps, seconds = _translate(run, test, decode)
        sps = len(hyps) / max(seconds, 1e-9)
        if cache and key:
            write_cache(
                run.run_dir,
                key,
                hyps,
                model_digest=run.digest,
                test_data=test.origin,
                decode=decode,
                seconds=seconds,
                sentences_per_s=sps,
            )
    refs = test.references
    scores = corpus_scores(hyps, refs, metrics)
    sys_len, ref_len = bleu_lengths(hyps, refs)
    return EvalRow(
        model=run.name,
        run_dir=run.location,
        test_set=test.name,
        test_data=test.origin,
        test_digest=test.digest,
        sentences=len(test.pairs),
        decode=decode,
        scores={k: v.to_dict() for k, v in scores.items()},
        length_ratio=sys_len / ref_len if ref_len else math.nan,
        sys_len=sys_len,
        ref_len=ref_len,
        seconds=round(seconds, 3),
        sentences_per_s=round(sps, 2),
        cached=hit is not None,
        cache_key=key,
        length_buckets=length_buckets(test.pairs, hyps),
        hypotheses=list(hyps),
        sentence_scores=sentence_scores(hyps, refs),
        pairs=list(test.pairs),
    )
