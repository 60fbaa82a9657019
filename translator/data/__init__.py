"""Data: corpus readers, tokenizers and batching (and the bundled corpus, in `ding-de-en/`).

- `corpus.py`: `Pair`, TSV / aligned text / TFDS / bundled readers (lazy), cleaning, splitting,
  and `read_split`, the dispatch on `data.corpus`;
- `tokenizers.py`: SentencePiece, word and character tokenizers with shared special ids;
- `batching.py`: length-bucketed tf.data training batches (from an examples source: encoded pairs
  in memory, or the training records) and padded decoding batches;
- `records.py`: the encoded training split as sharded TFRecord files (written by tokenize) and
  `RecordExamples`, the examples source that streams them to training;
- `synthetic.py`: a synthetic corpus of any size, the bundled pairs repeated with light noise.
"""
