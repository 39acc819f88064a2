"""A warning, not an error, when a run trains on sources its tokenizer and validation sets
never see: a study that adds a corpus but keeps the packaged tokenizer and validation groups
would tokenise it with the toy BPE and measure loss on the toy sets, without a word."""

from __future__ import annotations

import sys

from train.specs import RunSpec

_SHOWN: set[str] = set()  # once per process: a sweep of twenty runs warns once


def uncovered(spec: RunSpec) -> str | None:
    """One line naming the mix's sources that the BPE's `train_sources` or every validation
    set leave out, or None when both cover the mix (a pretrained tokenizer covers any)."""
    trained = sorted(n for n, w in spec.mix.weights.items() if w > 0)
    clauses = []
    if spec.tokenizer.kind == "bpe":
        lacking = [n for n in trained if n not in spec.tokenizer.train_sources]
        if lacking:
            known = ", ".join(spec.tokenizer.train_sources) or "none"
            clauses.append(f"tokenizer.train_sources ({known}) lack {', '.join(lacking)}")
    read = {v.source for v in spec.validation}
    unread = [n for n in trained if n not in read]
    if unread:
        sets = ", ".join(v.name for v in spec.validation)
        clauses.append(f"no validation set ({sets}) reads {', '.join(unread)}")
    if not clauses:
        return None
    return (
        f"warning: mix '{spec.mix.name}': {'; '.join(clauses)} "
        "(name your corpus in a tokenizer and a validation config of the study)"
    )


def warn_uncovered(spec: RunSpec) -> None:
    """Print `uncovered(spec)` to stderr, once per distinct line in this process."""
    line = uncovered(spec)
    if line is not None and line not in _SHOWN:
        _SHOWN.add(line)
        print(line, file=sys.stderr)
