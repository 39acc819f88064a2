"""Synthetic toy-world corpus: render a World (toyworld/world.py) into documents.

Public API: ``DOMAINS``, ``SPLITS``, ``documents``, ``iter_documents``, ``CorpusOptions``.
Document i of (world, domain, split, seed) has its own RNG stream, so ``documents(...,
n_docs=10)`` is a prefix of ``documents(..., n_docs=1000)`` and output is byte-identical across
processes. ``CorpusOptions()`` (the default) renders the original corpus byte for byte; its
knobs only change the output when set.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass

from common.errors import ConfigError
from toyworld import templates as T
from toyworld.world import (
    City,
    Country,
    Person,
    World,
    stable_seed,
)

__all__ = [
    "DOMAINS",
    "SPLITS",
    "CorpusOptions",
    "documents",
    "iter_documents",
    "person_fields",
    "subject_weights",
]

DOMAINS = ("encyclopedia", "narrative", "arithmetic")
SPLITS = ("train", "val", "shifted")


@dataclass(frozen=True)
class CorpusOptions:
    """How the corpus talks about the world (not what the world is).

    subject_zipf: 0 draws the subject of a biography or story uniformly from the seen people
    (the original corpus). s > 0 draws the seen person of rank r (0 = first in
    ``World.seen_people``) with probability proportional to (r + 1)^-s, so a few people are
    written about often and most rarely: facts come with graded frequency, and a model with
    more capacity memorises more of the tail. Shifted documents stay uniform over unseen people.
    """

    subject_zipf: float = 0.0
    #: probability that a biography ends its first paragraph with a recap ("In short, ...")
    #: restating two of its facts in the cloze wording the probes use; text often repeats
    #: itself, and a model learns from it to copy a fact stated earlier in the document
    recap_prob: float = 0.0


def corpus_options(options: dict, where: str = "sources.toyworld") -> CorpusOptions:
    """CorpusOptions from a toyworld source's options; a bad value is a one-line ConfigError."""
    values = {}
    for key, hi in (("subject_zipf", 4.0), ("recap_prob", 1.0)):
        v = options.get(key, 0.0)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= hi:
            raise ConfigError(f"{where}.{key}: must be a number in [0, {hi:g}], got {v!r}")
        values[key] = float(v)
    return CorpusOptions(**values)


def domain_counts(
    n_total: int, domains: list[str], weights: dict | None = None, where: str = "sources.toyworld"
) -> list[int]:
    """Documents per domain. No weights: an equal split, the remainder to the first domains
    (the original corpus). Weights: proportional, largest remainders first, summing to n_total."""
    if weights is None:
        return [
            n_total // len(domains) + (1 if i < n_total % len(domains) else 0)
            for i in range(len(domains))
        ]
    for d, w in weights.items():
        if d not in domains:
            raise ConfigError(
                f"{where}.domain_weights.{d}: not one of the source's domains "
                f"({', '.join(domains)})"
            )
        if isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0:
            raise ConfigError(f"{where}.domain_weights.{d}: must be a number >= 0, got {w!r}")
    ws = [float(weights.get(d, 0.0)) for d in domains]
    if sum(ws) <= 0:
        raise ConfigError(f"{where}.domain_weights: all weights are zero")
    exact = [n_total * w / sum(ws) for w in ws]
    counts = [int(x) for x in exact]
    by_remainder = sorted(range(len(domains)), key=lambda i: (counts[i] - exact[i], i))
    for i in by_remainder[: n_total - sum(counts)]:
        counts[i] += 1
    return counts


def subject_weights(world: World, zipf: float) -> list[float]:
    """Probability of each seen person (``World.seen_people`` order) being a document's subject."""
    raw = [(r + 1) ** -zipf for r in range(len(world.seen_people))]
    total = sum(raw)
    return [w / total for w in raw]


def _check(domain: str, split: str) -> None:
    if domain not in DOMAINS:
        raise ValueError(f"unknown toyworld domain {domain!r} (known: {', '.join(DOMAINS)})")
    if split not in SPLITS:
        raise ValueError(f"unknown toyworld split {split!r} (known: {', '.join(SPLITS)})")


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def person_fields(world: World, p: Person) -> dict[str, str]:
    """Placeholder values for one person (shared with toyworld/tasks.py so probes match)."""
    city: City = world.cities[p.city]
    country: Country = world.countries[city.country]
    f = p.gender == "f"
    return {
        "n": p.name,
        "P": "She" if f else "He",
        "p": "she" if f else "he",
        "Pos": "Her" if f else "His",
        "pos": "her" if f else "his",
        "obj_pr": "her" if f else "him",
        "colour": p.colour,
        "food": p.food,
        "profession": p.profession,
        "age": str(p.age),
        "city": city.name,
        "country": country.name,
        "lang": country.language,
        "capital": world.cities[country.capital].name,
        "dish": city.dish,
        "size": city.size,
        "pet": p.pet_name,
        "species": p.pet_species,
        "obj": p.obj,
        "objc": p.obj_colour,
        "friend": world.people[p.friend].name,
        "parent": world.people[p.parent].name if p.parent is not None else "",
        "kids": _join([world.people[k].name for k in world.children.get(p.idx, [])] or ["-"]),
    }


def _pick(rng: random.Random, pair: tuple[tuple[str, ...], tuple[str, ...]], shifted: bool) -> str:
    return rng.choice(pair[1] if shifted else pair[0])


def _subjects(world: World, shifted: bool) -> list[Person]:
    # Shifted documents are about unseen people only; train/val never mention them.
    return world.unseen_people if shifted else world.seen_people


def _person_facts(
    world: World, p: Person, rng: random.Random, shifted: bool, kinds: list[str] | None = None
) -> list[str]:
    fields = person_fields(world, p)
    if kinds is None:
        kinds = ["colour", "food", "profession", "age", "city", "pet", "obj", "friend"]
        # Composed person->country facts are withheld for half the people (two-hop probes),
        # and always withheld for unseen people, whose country is only derivable.
        if p.country_stated and not p.unseen:
            kinds.append("country")
        if p.parent is not None:
            kinds.append("parent")
        if p.idx in world.children:
            kinds.append("kids")
        rng.shuffle(kinds)
    return [_pick(rng, T.PERSON_FACTS[k], shifted).format_map(fields) for k in kinds]


_RECAP_KINDS = ("colour", "food", "profession", "pet", "city")


class _Subjects:
    """Draws document subjects; uniform draws use rng.choice exactly as the original corpus."""

    def __init__(self, world: World, opts: CorpusOptions):
        self.zipf = opts.subject_zipf
        self.recap_prob = opts.recap_prob
        self.cum = (
            list(itertools.accumulate(subject_weights(world, self.zipf))) if self.zipf > 0 else None
        )

    def pick(self, world: World, rng: random.Random, shifted: bool) -> Person:
        people = _subjects(world, shifted)
        if self.cum is None or shifted:
            return rng.choice(people)
        return rng.choices(people, cum_weights=self.cum)[0]


def _bio(world: World, rng: random.Random, shifted: bool, subj: _Subjects) -> str:
    p = subj.pick(world, rng, shifted)
    fields = person_fields(world, p)
    sents = [_pick(rng, T.PERSON_INTROS, shifted).format_map(fields)]
    sents += _person_facts(world, p, rng, shifted)
    if subj.recap_prob > 0 and rng.random() < subj.recap_prob:  # no draw at the default
        kinds = rng.sample(_RECAP_KINDS, 2)
        sents += ["In short,"] + [T.PERSON_FACTS[k][0][0].format_map(fields) for k in kinds]
    text = " ".join(sents)
    if rng.random() < 0.5 and not shifted:
        # A second paragraph about the friend (a seen person) lengthens docs and repeats facts.
        fr = world.people[p.friend]
        kinds = rng.sample(["colour", "food", "profession", "age", "city", "pet"], 3)
        text += "\n\n" + " ".join(_person_facts(world, fr, rng, shifted, kinds))
    return text


def _place_article(world: World, rng: random.Random, shifted: bool, subj: _Subjects) -> str:
    # Shifted articles pick a city with unseen residents so every document is about them.
    pool = [world.cities[p.city] for p in world.unseen_people] if shifted else world.cities
    city = rng.choice(pool)
    country = world.countries[city.country]
    fields = {
        "city": city.name,
        "country": country.name,
        "size": city.size,
        "dish": city.dish,
        "capital": world.cities[country.capital].name,
        "lang": country.language,
    }
    sents = [_pick(rng, T.CITY_FACTS[k], shifted).format_map(fields) for k in ("country", "dish")]
    sents += [
        _pick(rng, T.COUNTRY_FACTS[k], shifted).format_map(fields) for k in ("capital", "lang")
    ]
    residents = [p for p in _subjects(world, shifted) if p.city == city.idx]
    rng.shuffle(residents)
    paras = [" ".join(sents)]
    for p in residents[: rng.randint(2, 8)]:
        kinds = ["city"] + rng.sample(["colour", "food", "profession", "age", "pet", "obj"], 2)
        paras.append(" ".join(_person_facts(world, p, rng, shifted, kinds)))
    return "\n\n".join(paras)


def _encyclopedia(world: World, rng: random.Random, shifted: bool, subj: _Subjects) -> str:
    article = _bio if rng.random() < 0.75 else _place_article
    return article(world, rng, shifted, subj)


def _narrative(world: World, rng: random.Random, shifted: bool, subj: _Subjects) -> str:
    p = subj.pick(world, rng, shifted)
    fields = person_fields(world, p)
    events = list(T.STORY_EVENTS[1] if shifted else T.STORY_EVENTS[0])
    k = rng.randint(4, 20)
    # Without replacement first, so short stories don't repeat one event back to back.
    chosen = rng.sample(events, min(k, len(events))) + [
        rng.choice(events) for _ in range(k - len(events))
    ]
    lines = [_pick(rng, T.STORY_OPEN, shifted)] + chosen + [_pick(rng, T.STORY_CLOSE, shifted)]
    return " ".join(line.format_map(fields) for line in lines)


def _arith_values(rng: random.Random, tmpl: str) -> dict[str, str]:
    if ("*" in tmpl and "{m}" not in tmpl) or "Multiplying" in tmpl or "boxes" in tmpl:
        a, b = rng.randint(2, 12), rng.randint(2, 12)
        return {"a": str(a), "b": str(b), "r": str(a * b)}
    hi = 99 if rng.random() < 0.8 else 999
    a, b, c = rng.randint(0, hi), rng.randint(0, hi), rng.randint(2, 9)
    if "-" in tmpl or "spent" in tmpl:
        a, b = max(a, b), min(a, b)  # keep results non-negative, as in a school worksheet
        return {"a": str(a), "b": str(b), "r": str(a - b)}
    if "{m} * {c}" in tmpl:
        a, b = a % 20, b % 20
        return {"a": str(a), "b": str(b), "c": str(c), "m": str(a + b), "r": str((a + b) * c)}
    if "{m} + {c}" in tmpl:
        c = rng.randint(0, hi)
        return {"a": str(a), "b": str(b), "c": str(c), "m": str(a + b), "r": str(a + b + c)}
    return {"a": str(a), "b": str(b), "r": str(a + b)}


def _arithmetic(world: World, rng: random.Random, shifted: bool, subj: _Subjects) -> str:
    heads = ("Practice sheet.", "Exercises:", "Worked examples:", "Arithmetic drill.")
    items = [rng.choice(heads)]
    people = _subjects(world, shifted)
    for _ in range(rng.randint(6, 30)):
        if rng.random() < 0.25:
            tmpl = _pick(rng, T.WORD_PROBLEMS, shifted)
            vals = person_fields(world, rng.choice(people)) | _arith_values(rng, tmpl)
        else:
            tmpl = _pick(rng, T.ARITH_LINES, shifted)
            vals = _arith_values(rng, tmpl)
        items.append(tmpl.format_map(vals))
    return "\n".join(items)


_RENDER = {"encyclopedia": _encyclopedia, "narrative": _narrative, "arithmetic": _arithmetic}


def iter_documents(
    world: World,
    domain: str,
    n_docs: int,
    split: str = "train",
    seed: int = 0,
    options: CorpusOptions | None = None,
) -> Iterator[str]:
    """Yield ``n_docs`` documents; validates domain/split before yielding anything."""
    _check(domain, split)
    render, shifted = _RENDER[domain], split == "shifted"
    subj = _Subjects(world, options or CorpusOptions())
    for i in range(n_docs):
        # Per-document stream: train and val differ only by the split key -> same distribution.
        rng = random.Random(stable_seed("doc", world.seed, domain, split, seed, i))
        yield render(world, rng, shifted, subj)


def documents(
    world: World,
    domain: str,
    n_docs: int,
    split: str = "train",
    seed: int = 0,
    options: CorpusOptions | None = None,
) -> list[str]:
    """Render ``n_docs`` documents of one domain and split (see module docstring)."""
    _check(domain, split)  # eager so a bad key fails here, not at first iteration
    return list(iter_documents(world, domain, n_docs, split, seed, options))
