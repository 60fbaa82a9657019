"""Data: corpus readers, tokenizers and batching (and the bundled corpus, in `ding-de-en/`).

- `corpus.py`: `Pair`, TSV / aligned text / TFDS / bundled readers, cleaning, splitting, and
  `read_split`, the dispatch on `data.corpus`;
- `tokenizers.py`: SentencePiece, word and character tokenizers with shared special ids;
- `batching.py`: length-bucketed tf.data training batches and padded decoding batches.
"""
