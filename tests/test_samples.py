"""Per-item predictions (`eval.log_samples=true`) and `harness items`: the files, their
resume semantics, the ranking of moved items, and the command on a real tiny run."""

from __future__ import annotations

import pandas as pd
import pytest

from analysis.errors import AnalysisError
from analysis.items import format_movers, movers
from eval.continuous import continuations, request_args
from eval.samples import (
    drop_after,
    read_samples,
    sample_row,
    sample_rows,
    sample_steps,
    samples_path,
    write_samples,
)
from harness.config import run_spec
from harness.identity import semantic_config
from harness.runner import execute
from tests.conftest import compose, tiny_overrides


def _mc(doc_id: int, lls: list[float], gold: int, acc: float) -> dict:
    """A multiple-choice sample as lm-eval logs it."""
    ctx = f"Question {doc_id}: which one?"
    return {
        "doc_id": doc_id,
        "doc": {},
        "target": gold,
        "arguments": [(ctx, f" c{i}") for i in range(len(lls))],
        "resps": [[(ll, False)] for ll in lls],
        "filtered_resps": [(ll, False) for ll in lls],
        "metrics": ["acc", "acc_norm"],
        "doc_hash": f"h{doc_id}",
        "acc": acc,
        "acc_norm": acc,
    }


def test_a_multiple_choice_item_keeps_its_choices_and_logliks():
    row = sample_row(_mc(3, [-1.0, -2.5, -0.5], gold=2, acc=1.0))
    assert row["doc_id"] == 3 and row["gold"] == 2 and row["acc"] == 1.0
    assert row["loglik"] == [-1.0, -2.5, -0.5] and row["choices"] == [" c0", " c1", " c2"]
    assert row["prompt"] == "Question 3: which one?" and row["response"] is None


@pytest.mark.parametrize(
    ("arguments", "prompt", "conts"),
    [
        ([["ctx", " a"], ["ctx", " b"]], "ctx", [" a", " b"]),  # older lm-eval: lists
        ({"gen_args_0": {"arg_0": "ctx", "arg_1": " a"}}, "ctx", [" a"]),  # newer: dicts
        ({"gen_args_0": ["ctx", " a"]}, "ctx", [" a"]),  # a dict of lists
        (None, None, None),
        ([], None, None),
        ({}, None, None),
        ("ctx", None, None),  # not a list of requests: none, not its first character
        (5, None, None),
        ([None], None, None),
        ([["ctx"]], "ctx", None),  # a request without a continuation
    ],
)
def test_request_arguments_in_each_logged_form(arguments, prompt, conts):
    sample = {"doc_id": 0, "arguments": arguments}
    assert sample_row(sample)["prompt"] == prompt
    assert continuations(sample) == conts
    assert isinstance(request_args(sample), list)


def test_a_generation_item_keeps_its_response():
    sample = {
        "doc_id": 0,
        "target": "Paris",
        "arguments": [("Capital of France?", {"until": ["\n"]})],
        "filtered_resps": ["Paris"],
        "metrics": ["exact_match"],
        "doc_hash": "h",
        "exact_match": 1.0,
    }
    row = sample_row(sample)
    assert row["loglik"] is None and row["response"] == "Paris" and row["exact_match"] == 1.0


def test_files_round_trip_and_a_resume_drops_later_steps(tmp_path):
    for step in (2, 4, 8):
        rows = sample_rows("rid", step, step * 10, {"t": [_mc(0, [-1.0, -2.0], 0, 1.0)]})
        write_samples(tmp_path, step, rows)
    assert sample_steps(tmp_path) == [2, 4, 8]
    back = read_samples(tmp_path, 4)
    assert list(back["step"]) == [4] and list(back["loglik"][0]) == [-1.0, -2.0]
    assert not list((tmp_path / "samples").glob(".*"))  # no temporary file left beside
    drop_after(tmp_path, 4)  # resumed from step 4: step 8 is scored again
    assert sample_steps(tmp_path) == [2, 4]
    assert samples_path(tmp_path, 2).is_file()


def _frame(items: list[tuple[int, float, float]]) -> pd.DataFrame:
    """(doc_id, acc, loglik of the gold choice) per item, two choices each."""
    return pd.DataFrame(
        sample_rows("r", 1, 1, {"toy": [_mc(d, [ll, -3.0], 0, acc) for d, acc, ll in items]})
    )


def test_movers_rank_flips_first_then_the_gold_loglik():
    a = _frame([(0, 0.0, -5.0), (1, 1.0, -1.0), (2, 0.0, -4.0), (3, 1.0, -1.0)])
    b = _frame([(0, 1.0, -0.5), (1, 0.0, -3.5), (2, 0.0, -1.0), (3, 1.0, -1.1)])
    ranked, summary = movers(a, b, "toy")
    # the two flips first (the larger log-likelihood move first), then by |change|
    assert list(ranked["doc_id"]) == [0, 1, 2, 3]
    assert summary == {"items": 4, "mean_a": 0.5, "mean_b": 0.5, "gained": 1, "lost": 1}
    text = format_movers(ranked, summary, "acc", top=2)
    assert "acc: 0.500 -> 0.500 over 4 items; 1 became right, 1 became wrong" in text
    assert "0 -> 1" in text and "-5.00 -> -0.50" in text and "Question 0" in text
    assert "Question 2" not in text  # top=2


@pytest.mark.parametrize(
    "task, metric, message",
    [
        ("nosuch", "acc", "task: 'nosuch' has no items in A (logged: toy)"),
        ("toy", "f1", "metric: task 'toy' logs no 'f1' per item in A (has: acc, acc_norm)"),
    ],
)
def test_movers_bad_input_is_one_line(task, metric, message):
    a = _frame([(0, 1.0, -1.0)])
    with pytest.raises(AnalysisError) as err:
        movers(a, a, task, metric)
    assert str(err.value) == message


def test_other_documents_under_one_doc_id_are_refused():
    a, b = _frame([(0, 1.0, -1.0)]), _frame([(0, 1.0, -1.0)])
    b["doc_hash"] = "other"
    with pytest.raises(AnalysisError, match="item 0 is another document in A than in B"):
        movers(a, b, "toy")


def test_log_samples_is_not_part_of_the_run_identity(tmp_path):
    base = tiny_overrides(tmp_path / "c", tmp_path / "o")
    on = run_spec(compose([*base, "eval.log_samples=true"]))
    assert on.eval.log_samples is True
    assert "log_samples" not in semantic_config(on)["eval"]


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory, shared_cache):
    cache, out = shared_cache, tmp_path_factory.mktemp("samplesout")
    ov = tiny_overrides(cache, out, tasks=True) + ["model=cpu-40k", "eval.log_samples=true"]
    outcome = execute(run_spec(compose(ov)), out)
    return out, outcome, cache


@pytest.mark.slow
def test_each_evaluated_checkpoint_keeps_its_items(logged_run):
    import json

    out, outcome, _ = logged_run
    record = json.loads((outcome.path / "record.json").read_text())
    steps = [c["step"] for c in record["checkpoints"]]
    assert sample_steps(outcome.path) == steps
    for entry in record["checkpoints"]:
        frame = read_samples(outcome.path, entry["step"])
        assert set(frame["task"]) == set(entry["tasks"])
        assert (frame["run_id"] == outcome.run_id).all()
        for task, metrics in entry["tasks"].items():
            items = frame[frame["task"] == task]
            assert len(items) == 24  # eval.n_per_task
            # the per-item scores are the record's: their mean is the task's accuracy
            assert items["acc"].mean() == pytest.approx(metrics["acc"])
            gold = [ll[g] for ll, g in zip(items["loglik"], items["gold"], strict=True)]
            assert sum(gold) / len(gold) == pytest.approx(metrics["logprob"])


@pytest.mark.slow
def test_harness_items_names_the_items_that_moved(logged_run, run_cli):
    out, outcome, _ = logged_run
    first, final = sample_steps(outcome.path)[0], sample_steps(outcome.path)[-1]
    code, text, err = run_cli(
        "items", f"root={out}", "task=toy_recall", f"a={outcome.run_id}@first", "b=cpu-40k", "top=3"
    )
    assert code == 0, err
    assert f"A = run {outcome.run_id} (cpu-40k, toy, seed 0) at step {first}" in text
    assert f"B = run {outcome.run_id} (cpu-40k, toy, seed 0) at step {final}" in text
    assert "over 24 items" in text
    lines = text.splitlines()
    header = next(i for i, ln in enumerate(lines) if ln.startswith("doc_id"))
    assert len(lines[header + 1 :]) == 3


@pytest.mark.parametrize(
    "args, message",
    [
        (["task=toy_recall", "a=zzz", "b=zzz"], "a: no run 'zzz' under"),
        (["task=toy_recall", "a=cpu-40k@7", "b=cpu-40k"], "a: run "),
        (["task=toy_recall", "a=cpu-40k", "b=cpu-40k", "top=0"], "top: must be a positive integer"),
        (["task=toy_recall", "a=cpu-40k", "b=cpu-40k", "colour=red"], "colour: unknown key"),
        (["task=toy_recall", "a=cpu-40k"], "b: required"),
        (["task=nosuch", "a=cpu-40k", "b=cpu-40k"], "task: 'nosuch' has no items in A"),
    ],
)
@pytest.mark.slow
def test_harness_items_bad_input(logged_run, run_cli, args, message):
    out, _, _ = logged_run
    code, _, err = run_cli("items", f"root={out}", *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_resumed_run_ends_with_the_items_of_an_uninterrupted_one(logged_run, tmp_path):
    """Killed after its first checkpoint (the final checkpoint, its record entry and its items
    lost, a stale file from a later step left): the resumed run rewrites the final step's file
    exactly and drops the stale one, as the record drops entries after the resume step."""
    import json
    import shutil

    out, outcome, _ = logged_run
    steps = sample_steps(outcome.path)
    copy = tmp_path / "runs" / outcome.run_id
    shutil.copytree(outcome.path, copy)
    record = json.loads((copy / "record.json").read_text())
    record["status"], record["compute"] = "interrupted", None
    record["checkpoints"] = record["checkpoints"][:1]
    (copy / "record.json").write_text(json.dumps(record))
    shutil.rmtree(copy / "checkpoints" / f"step_{steps[-1]}")
    samples_path(copy, steps[-1]).unlink()
    shutil.copy(samples_path(copy, steps[0]), samples_path(copy, 10**6))  # stale, after resume
    config = json.loads((outcome.path / "record.json").read_text())["config"]
    from harness.config import spec_from_dict

    again = execute(spec_from_dict(config), tmp_path)
    assert again.status == "complete" and again.run_id == outcome.run_id
    assert sample_steps(copy) == steps
    pd.testing.assert_frame_equal(
        read_samples(copy, steps[-1]), read_samples(outcome.path, steps[-1])
    )


@pytest.mark.slow
def test_a_backfill_adds_its_tasks_items_to_each_checkpoint(logged_run, run_cli, tmp_path):
    """`harness eval ... eval.log_samples=true`: the backfilled task's items join each
    checkpoint's file; the items kept before are left as they were."""
    import shutil

    out, outcome, cache = logged_run
    copy = tmp_path / "runs" / outcome.run_id
    shutil.copytree(outcome.path, copy)
    before = {s: read_samples(copy, s) for s in sample_steps(copy)}
    world = [
        a
        for a in tiny_overrides(cache, out, tasks=True)
        if a.startswith(("sources.", "tokenizer.", "eval.n_per"))
    ]
    code, _, err = run_cli(
        "eval",
        f"root={tmp_path}",
        f"cache_dir={cache}",
        *world,
        "eval=toy",
        "eval.tasks=[toy_grammar@prefix]",
        "eval.log_samples=true",
    )
    assert code == 0, err
    for step, old in before.items():
        now = read_samples(copy, step)
        added = now[now["task"] == "toy_grammar@prefix"]
        assert len(added) == 24 and (added["step"] == step).all()
        kept = now[now["task"] != "toy_grammar@prefix"].reset_index(drop=True)
        pd.testing.assert_frame_equal(kept[old.columns], old)
