"""Search: batched greedy and beam search over the decoding contract.

- `contract.py`: `StepModel`, what search needs of a model (start, step), and the `Seq2Seq` adapter;
- `search.py`: the compiled greedy and beam loops, length rules and penalty, `Searcher`.
"""
