"""Toy downstream tasks: files, chance levels, world consistency, and the real lm-eval path."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from eval.task_yaml import REQUIRED_FIELDS
from toyworld.corpus import DOMAINS, CorpusOptions, documents, person_fields
from toyworld.tasks import (
    SETUPS,
    TASKS,
    check_task_yaml,
    load_task_specs,
    make_items,
    write_toy_tasks,
)
from toyworld.world import make_world

N = 20
CHANCE = {
    "toy_recall": 0.25,
    "toy_twohop": 0.25,
    "toy_arith": 0.25,
    "toy_grammar": 0.5,
    "toy_override": 0.25,
    "toy_code": 0.25,
    "toy_facts": 0.25,
    "toy_unseen": 0.25,
}


@pytest.fixture(scope="module")
def world():
    return make_world(seed=1, n_entities=60)


@pytest.fixture(scope="module")
def task_dir(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("toytasks")
    return out, write_toy_tasks(world, out, n_per_task=N, seed=0)


def _rows(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_specs_variants_and_chance(task_dir):
    out, specs = task_dir
    assert {s.task for s in specs.values()} == set(TASKS)
    for task in TASKS:
        names = {s.name for s in specs.values() if s.task == task}
        assert task in names and len(names) >= 3  # default + at least 2 variants
        assert names == {f"{task}@{s}" if s else task for s in SETUPS[task]}
    for s in specs.values():
        assert "@" not in s.lm_eval_name and s.name.replace("@", "__") == s.lm_eval_name
        assert s.chance == CHANCE[s.task] and s.n_samples == N
        assert s.num_fewshot == (3 if s.setup == "3shot" else 0)
        cfg = check_task_yaml(Path(s.yaml_path))
        assert cfg["task"] == s.lm_eval_name and cfg["num_fewshot"] == s.num_fewshot
        for row in _rows(cfg["dataset_kwargs"]["data_files"]["test"]):
            assert 1 / len(row["choices"]) == s.chance and 0 <= row["gold"] < len(row["choices"])
            assert len(set(row["choices"])) == len(row["choices"])
            if s.setup == "letters":
                assert row["choices"] == list("ABCD") and "\nA. " in row["query"]


def test_gold_sits_at_every_position_equally_often(task_dir):
    """A model that always answers the same position (the letter "A", the first sentence)
    scores chance exactly, not chance plus the imbalance of a random shuffle."""
    out, specs = task_dir
    for s in specs.values():
        rows = _rows(check_task_yaml(Path(s.yaml_path))["dataset_kwargs"]["data_files"]["test"])
        n = len(rows[0]["choices"])
        counts = [sum(r["gold"] == k for r in rows) for k in range(n)]
        assert max(counts) - min(counts) <= 1, (s.name, counts)
    # the lettered setup lists the cloze setup's choices in the same order, gold at the same place
    cloze = _rows(Path(out) / "toy_facts.jsonl")
    letters = _rows(Path(out) / "toy_facts__letters.jsonl")
    for c, le in zip(cloze, letters, strict=True):
        assert le["gold"] == c["gold"]
        assert f"\n{'ABCD'[c['gold']]}. {c['choices'][c['gold']]}\n" in le["query"]


def test_deterministic_bytes(world, task_dir, tmp_path):
    out, specs = task_dir
    again = write_toy_tasks(world, tmp_path / "a", n_per_task=N, seed=0)
    other = write_toy_tasks(world, tmp_path / "b", n_per_task=N, seed=1)
    for name, spec in specs.items():
        stem = spec.lm_eval_name
        first, second = out / f"{stem}.jsonl", tmp_path / "a" / f"{stem}.jsonl"
        assert first.read_bytes() == second.read_bytes()
        same_yaml = Path(again[name].yaml_path).read_text().replace(str(tmp_path / "a"), str(out))
        assert same_yaml == Path(spec.yaml_path).read_text()
    differs = [
        (out / f"{t}.jsonl").read_bytes() != (tmp_path / "b" / f"{t}.jsonl").read_bytes()
        for t in TASKS
    ]
    assert all(differs) and set(other) == set(specs)


def test_load_task_specs_roundtrip(task_dir, tmp_path):
    out, specs = task_dir
    assert load_task_specs(out) == specs
    with pytest.raises(ValueError, match="index.json"):
        load_task_specs(tmp_path)


@pytest.mark.parametrize("field", [*REQUIRED_FIELDS, "doc_to_target", "doc_to_choice"])
def test_yaml_missing_field_is_one_line_error(task_dir, tmp_path, field):
    out, specs = task_dir
    cfg = yaml.safe_load(Path(specs["toy_recall"].yaml_path).read_text())
    del cfg[field]
    bad = tmp_path / "broken.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ValueError) as exc:
        check_task_yaml(bad)
    msg = str(exc.value)
    assert "\n" not in msg and str(bad) in msg and repr(field) in msg


def test_answers_consistent_with_world(world, task_dir):
    out, specs = task_dir
    by_name = {p.name: p for p in world.people}
    for it in make_items(world, "toy_recall", N):
        p = by_name[it["person"]]
        assert not p.unseen and it["choices"][it["gold"]] == person_fields(world, p)[it["attr"]]
    for it in make_items(world, "toy_twohop", N):
        p = by_name[it["person"]]
        assert not p.country_stated
        assert it["choices"][it["gold"]] == world.country_of(p).name
    for it in make_items(world, "toy_override", N):
        assert it["world_value"] in it["choices"]
        assert it["choices"][it["gold"]] != it["world_value"]
        assert f" {it['choices'][it['gold']]}. " in it["query"]  # the prompt states the answer
    for task, unseen in (("toy_facts", False), ("toy_unseen", True)):
        for it in make_items(world, task, N):
            p = by_name[it["person"]]
            assert p.unseen == unseen
            assert it["choices"][it["gold"]] == person_fields(world, p)[it["attr"]]
            assert it["query"].startswith(p.name) and it["choices"][it["gold"]] not in it["query"]
    for it in make_items(world, "toy_arith", N):
        assert eval(it["query"].rstrip(" =")) == int(it["choices"][it["gold"]])
    for it in make_items(world, "toy_grammar", N):
        good = it["choices"][it["gold"]]
        p = next(by_name[n] for n in by_name if good.startswith(n + " "))
        if it["kind"] == "pronoun":
            assert (" She fed her " in good) == (p.gender == "f")
        else:
            assert " walk to " in good
            assert it["prefix"] + " " + it["prefix_choices"][it["gold"]] == good


# The demo's corpus options: the answers of toy_unseen must stay out of the training text
# however the corpus is rendered.
DEMO_CORPUS = CorpusOptions(subject_zipf=1.0, recap_prob=0.5)


def test_unseen_answers_not_in_training_text(world):
    train = "\n".join(
        d for dom in DOMAINS for d in documents(world, dom, 200, "train", 0, DEMO_CORPUS)
    )
    unseen = {it["person"] for it in make_items(world, "toy_unseen", N)}
    seen = {it["person"] for it in make_items(world, "toy_facts", N)}
    assert unseen and not [n for n in unseen if n in train]
    # ... while the people toy_facts asks about are written about in it
    assert sum(n in train for n in seen) >= 0.8 * len(seen)


def test_frequency_prior_scores_chance(world):
    # A guesser that knows only how often each answer occurs in training text (no binding
    # of person to value) must sit at chance: otherwise the task leaks its answers.
    from collections import Counter

    big = make_world(seed=1, n_entities=400, n_unseen=100)
    train = " ".join(
        d for dom in DOMAINS for d in documents(big, dom, 300, "train", 0, DEMO_CORPUS)
    )
    freq = Counter(train.replace(".", " ").replace(",", " ").split())
    for task in ("toy_facts", "toy_unseen"):
        items = make_items(big, task, 400)[24:]
        hits = [
            max(range(len(it["choices"])), key=lambda i: freq[it["choices"][i]]) == it["gold"]
            for it in items
        ]
        assert len(items) == 400 and abs(sum(hits) / len(hits) - 0.25) < 0.07, task


def test_fewshot_pool_disjoint_from_test(world):
    for task in TASKS:
        items = make_items(world, task, N)
        keys = [it["key"] for it in items]
        assert len(keys) == len(set(keys)) >= N + 3


def test_code_task_uses_stdlib(world):
    import sysconfig

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for it in make_items(world, "toy_code", 5, seed=2):
        rel, line = it["source"].rsplit(":", 1)
        src = (stdlib / rel).read_text(encoding="utf-8", errors="replace").splitlines()
        target_line = src[int(line) - 1]
        indent = target_line[: len(target_line) - len(target_line.lstrip())]
        assert target_line.lstrip().startswith(it["choices"][it["gold"]])
        assert it["query"].endswith("\n" + indent)  # the prompt stops where the keyword starts
    assert make_items(world, "toy_code", 5, seed=2) == make_items(world, "toy_code", 5, seed=2)


def test_unknown_task_error(world):
    with pytest.raises(ValueError, match=r"^unknown toy task 'toy_nope' \(known: "):
        make_items(world, "toy_nope", 3)


def _tiny_model_and_tokenizer(world):
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    texts = [d for dom in DOMAINS for d in documents(world, dom, 40, "train", 0)]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer)
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="</s>"
    )
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(hf_tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    return LlamaForCausalLM(cfg).eval(), hf_tok


def test_every_task_runs_through_lm_eval(world, task_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # absolute data_files: loading must not depend on cwd
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    out, specs = task_dir
    model, tok = _tiny_model_and_tokenizer(world)
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=8, device="cpu")
    names = sorted(s.lm_eval_name for s in specs.values())
    res = lm_eval.simple_evaluate(
        model=lm,
        tasks=names,
        limit=5,
        log_samples=True,
        task_manager=TaskManager(include_path=str(out)),
    )
    assert set(res["results"]) == set(names)
    for name in names:
        r = res["results"][name]
        assert 0.0 <= r["acc,none"] <= 1.0 and 0.0 <= r["acc_norm,none"] <= 1.0
    for spec in specs.values():
        ctx = res["samples"][spec.lm_eval_name][0]["arguments"][0][0]
        # 3-shot prompts carry three solved examples separated by blank lines.
        assert ctx.count("\n\n") >= (3 if spec.setup == "3shot" else 0)
        assert res["n-shot"][spec.lm_eval_name] == spec.num_fewshot
    assert os.environ["HF_DATASETS_OFFLINE"] == "1"
