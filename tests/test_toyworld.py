"""Toy-world corpus: determinism, splits, domain coverage and fact consistency."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from common.errors import ConfigError
from toyworld import templates as T
from toyworld.corpus import (
    DOMAINS,
    SPLITS,
    CorpusOptions,
    corpus_options,
    documents,
    domain_counts,
    person_fields,
    subject_weights,
)
from toyworld.world import make_world

ROOT = Path(__file__).resolve().parents[1]
N_DOCS = 60


@pytest.fixture(scope="module")
def world():
    return make_world(seed=3, n_entities=120)


def _digest(world, seed: int = 0) -> str:
    h = hashlib.sha256()
    for domain in DOMAINS:
        for split in SPLITS:
            for doc in documents(world, domain, 20, split, seed):
                h.update(doc.encode() + b"\0")
    return h.hexdigest()


def test_same_seed_same_bytes_across_processes(world):
    # PYTHONHASHSEED differs per process, so any reliance on hash(str) would show up here.
    code = (
        "from toyworld.world import make_world; import tests.test_toyworld as t;"
        "print(t._digest(make_world(seed=3, n_entities=120)))"
    )
    outs = set()
    for hash_seed in ("1", "987"):
        env = os.environ | {"PYTHONPATH": str(ROOT), "PYTHONHASHSEED": hash_seed}
        run = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        )
        outs.add(run.stdout.strip())
    assert outs == {_digest(world)}


def test_different_seed_differs(world):
    assert _digest(world, seed=1) != _digest(world, seed=0)
    assert _digest(make_world(seed=4, n_entities=120)) != _digest(world)
    assert documents(world, "narrative", 5, "train", 0) == documents(world, "narrative", 5)


def test_prefix_stable(world):
    assert documents(world, "encyclopedia", 7) == documents(world, "encyclopedia", 30)[:7]


@pytest.mark.parametrize("domain", DOMAINS)
def test_domain_coverage_and_length(world, domain):
    for split in SPLITS:
        docs = documents(world, domain, N_DOCS, split, 0)
        assert len(docs) == N_DOCS and len(set(docs)) == N_DOCS
        words = [len(d.split()) for d in docs]
        assert min(words) >= 25 and max(words) <= 450, (split, min(words), max(words))
        assert sum(words) / len(words) >= 50


def test_arithmetic_is_correct(world):
    text = "\n".join(documents(world, "arithmetic", 100, "train", 0))
    n = 0
    for a, op, b, r in re.findall(r"(\d+) ([-+*]) (\d+) = (\d+)(?![ \d]*[-+*])", text):
        n += 1
        assert eval(f"{a}{op}{b}") == int(r)  # operands are digits only: eval is safe here
    assert n > 500


@pytest.mark.parametrize("domain,split", [("foo", "train"), ("narrative", "test")])
def test_unknown_key_is_one_line_error(world, domain, split):
    with pytest.raises(ValueError) as exc:
        documents(world, domain, 3, split)
    msg = str(exc.value)
    assert "\n" not in msg
    bad = domain if domain not in DOMAINS else split
    assert repr(bad) in msg and ("domain" in msg if bad == domain else "split" in msg)
    assert str(exc.value) != "" and "known:" in msg


def test_unknown_domain_message_exact(world):
    with pytest.raises(
        ValueError,
        match=r"^unknown toyworld domain 'foo' \(known: "
        r"encyclopedia, narrative, arithmetic\)$",
    ):
        documents(world, "foo", 1, "train")


def test_val_same_distribution_different_docs(world):
    for domain in DOMAINS:
        train = set(documents(world, domain, N_DOCS, "train", 0))
        val = set(documents(world, domain, N_DOCS, "val", 0))
        assert not train & val


def test_shifted_uses_only_unseen_entities(world):
    unseen = [p.name for p in world.unseen_people]
    assert unseen and all(not p.unseen for p in world.seen_people)
    for domain in DOMAINS:
        for split in ("train", "val"):
            text = "\n".join(documents(world, domain, N_DOCS, split, 0))
            assert not [n for n in unseen if n in text], (domain, split)
    for domain in ("encyclopedia", "narrative"):
        for doc in documents(world, domain, N_DOCS, "shifted", 0):
            assert any(n in doc for n in unseen)


def _literal_anchor(template: str) -> str:
    return max(re.split(r"\{\w+\}", template), key=len)


def _heldout_train_pairs():
    groups = [
        *T.PERSON_FACTS.values(),
        *T.CITY_FACTS.values(),
        *T.COUNTRY_FACTS.values(),
        T.PERSON_INTROS,
        T.STORY_OPEN,
        T.STORY_EVENTS,
        T.STORY_CLOSE,
        T.ARITH_LINES,
        T.WORD_PROBLEMS,
    ]
    train = [t for g in groups for t in g[0]]
    heldout = [t for g in groups for t in g[1]]
    return train, heldout


def test_heldout_templates_never_in_train(world):
    train_t, heldout_t = _heldout_train_pairs()
    train_text = "\n".join(d for dom in DOMAINS for d in documents(world, dom, 150, "train", 0))
    shifted_text = "\n".join(d for dom in DOMAINS for d in documents(world, dom, 150, "shifted"))
    for tmpl in heldout_t:
        anchor = _literal_anchor(tmpl)
        assert len(anchor.strip()) >= 8, tmpl
        assert not any(anchor in t for t in train_t), tmpl
        assert anchor not in train_text, tmpl
    assert sum(_literal_anchor(t) in shifted_text for t in heldout_t) >= len(heldout_t) // 2


def _template_regex(tmpl: str, key: str) -> re.Pattern | None:
    # Only templates naming the person ({n}) and exactly one value slot can be audited.
    slots = re.findall(r"\{(\w+)\}", tmpl)
    if "n" not in slots or key not in slots or len(set(slots) - {"n", "pos", "p", "P"}) != 1:
        return None
    parts = re.split(r"(\{\w+\})", tmpl)
    pat = ""
    for part in parts:
        if part == "{n}":
            pat += r"(?P<n>[A-Z][a-z]+ [A-Z][a-z]+)"
        elif part == f"{{{key}}}":
            pat += r"(?P<v>[A-Za-z0-9]+)"
        elif part in ("{pos}", "{p}", "{P}"):
            pat += r"\w+"
        else:
            pat += re.escape(part)
    return re.compile(pat)


def test_documents_state_world_facts(world):
    by_name = {p.name: p for p in world.people}
    text = "\n".join(documents(world, "encyclopedia", 400, "train", 0))
    checked = 0
    for key in ("colour", "food", "profession", "age", "city", "country"):
        for tmpl in T.PERSON_FACTS[key][0]:
            rx = _template_regex(tmpl, key)
            for m in rx.finditer(text) if rx else ():
                person = by_name[m["n"]]
                assert person_fields(world, person)[key] == m["v"], (tmpl, m.group(0))
                checked += 1
    assert checked > 1000


def test_two_hop_facts_derivable_not_stated(world):
    text = "\n".join(documents(world, "encyclopedia", 600, "train", 0))
    city_of = dict(re.findall(r"([A-Z][a-z]+ [A-Z][a-z]+) lives in ([A-Z][a-z]+)\.", text))
    country_of = dict(re.findall(r"([A-Z][a-z]+) is located in ([A-Z][a-z]+)\.", text))
    derived = 0
    for p in world.seen_people:
        truth = world.country_of(p).name
        if not p.country_stated:
            # The composed fact must be left for the model to infer.
            assert f"{p.name} lives in the country of" not in text
            assert f"{p.name} is a citizen of" not in text
        if p.name in city_of and city_of[p.name] in country_of:
            assert country_of[city_of[p.name]] == truth
            derived += 1
    assert derived >= 20


def test_default_corpus_options_reproduce_the_original_corpus(world):
    # CorpusOptions() must not move a single byte: run ids and losses of existing configs
    # depend on it (the golden digest below was taken before the options existed).
    assert _digest(world) == _digest_with(world, CorpusOptions())
    for domain in DOMAINS:
        assert documents(
            world, domain, 30, "train", 0, CorpusOptions(subject_zipf=0.0)
        ) == documents(world, domain, 30, "train", 0)


def _digest_with(world, options) -> str:
    h = hashlib.sha256()
    for domain in DOMAINS:
        for split in SPLITS:
            for doc in documents(world, domain, 20, split, 0, options):
                h.update(doc.encode() + b"\0")
    return h.hexdigest()


def _subject_counts(world, options, n_docs: int = 400) -> list[int]:
    docs = documents(world, "encyclopedia", n_docs, "train", 0, options)
    docs += documents(world, "narrative", n_docs, "train", 0, options)
    # A biography or story names its subject in its first sentence (place articles: a city).
    firsts = [d.split(". ")[0] for d in docs]
    return [sum(p.name in f for f in firsts) for p in world.seen_people]


def test_subject_zipf_grades_fact_frequency(world):
    uniform = _subject_counts(world, CorpusOptions())
    zipf = _subject_counts(world, CorpusOptions(subject_zipf=1.0))
    head, tail = slice(0, 5), slice(-30, None)
    # Zipf: the first-ranked people are written about many times more often than the last.
    assert sum(zipf[head]) / 5 > 6 * sum(zipf[tail]) / 30
    assert sum(uniform[head]) / 5 < 2 * sum(uniform[tail]) / 30
    w = subject_weights(world, 1.0)
    assert abs(sum(w) - 1) < 1e-9 and w[0] / w[9] == pytest.approx(10.0)
    # Shifted documents stay about unseen people, whatever the option.
    unseen = {p.name for p in world.unseen_people}
    for doc in documents(world, "encyclopedia", 40, "shifted", 0, CorpusOptions(subject_zipf=1.0)):
        assert any(n in doc for n in unseen)


@pytest.mark.parametrize("bad", [-1, 5, "x", True])
def test_corpus_option_errors_name_key_and_value(bad):
    msg = r"^sources\.toy\.subject_zipf: .*" + re.escape(repr(bad))
    with pytest.raises(ConfigError, match=msg):
        corpus_options({"subject_zipf": bad}, "sources.toy")


def test_domain_counts():
    assert domain_counts(10, list(DOMAINS)) == [4, 3, 3]  # the original equal split
    assert domain_counts(
        10, list(DOMAINS), {"encyclopedia": 3, "narrative": 1, "arithmetic": 1}
    ) == [6, 2, 2]
    assert (
        sum(
            domain_counts(1001, list(DOMAINS), {"encyclopedia": 2, "narrative": 1, "arithmetic": 1})
        )
        == 1001
    )
    assert domain_counts(9, list(DOMAINS), {"narrative": 1}) == [0, 9, 0]
    with pytest.raises(ConfigError, match=r"domain_weights\.poems: not one of"):
        domain_counts(9, list(DOMAINS), {"poems": 1})
    with pytest.raises(ConfigError, match=r"domain_weights\.narrative: must be a number >= 0"):
        domain_counts(9, list(DOMAINS), {"narrative": -1})


def test_recap_restates_facts_of_the_same_biography(world):
    plain = documents(world, "encyclopedia", 80, "train", 0)
    recap = documents(world, "encyclopedia", 80, "train", 0, CorpusOptions(recap_prob=0.5))
    assert not any("In short," in d for d in plain)
    with_recap = [d for d in recap if "In short," in d]
    assert 20 <= len(with_recap) <= 60
    by_name = {p.name: p for p in world.people}
    for doc in with_recap:
        first = doc.split("\n\n")[0]
        head, tail = first.split(" In short, ")
        subject = next(n for n in by_name if tail.startswith(n))
        assert subject in head.split(". ")[0]  # the biography's own subject
        fields = person_fields(world, by_name[subject])
        truths = {T.PERSON_FACTS[k][0][0].format_map(fields) for k in T.PERSON_FACTS}
        sents = [s if s.endswith(".") else s + "." for s in tail.split(". ")]
        # two true facts, in the probes' wording
        assert len(sents) == 2 and set(sents) <= truths, sents


def test_n_unseen_holds_more_people_out():
    default = make_world(seed=3, n_entities=120)
    assert len(default.unseen_people) == 12
    assert make_world(seed=3, n_entities=120, n_unseen=12).people == default.people
    w = make_world(seed=3, n_entities=120, n_unseen=40)
    assert len(w.unseen_people) == 40
    # relations point at seen people only, so training text never names an unseen person
    assert all(not w.people[p.friend].unseen for p in w.people)
    assert all(p.parent is None or not w.people[p.parent].unseen for p in w.people)
    with pytest.raises(ValueError, match=r"n_unseen must be in \[2, n_entities/2\], got 61"):
        make_world(seed=3, n_entities=120, n_unseen=61)
