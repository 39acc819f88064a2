"""Downstream evaluation: lm-eval on toy tasks, variants, continuous metrics, backfill."""

from __future__ import annotations

import json
import math

import pytest
import torch

from eval.continuous import item_metrics
from harness.config import run_spec
from harness.runner import execute
from tests.conftest import compose, tiny_overrides

TASKS = ["toy_recall", "toy_recall@letters", "toy_arith"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, shared_cache):
    # the session's cache: the tokenizer and token caches of the tiny world are built once
    cache = shared_cache
    out = tmp_path_factory.mktemp("evalout")
    spec = run_spec(compose(tiny_overrides(cache, out, tasks=True)))
    outcome = execute(spec, out)
    return cache, out, outcome


def read(path):
    return json.loads((path / "record.json").read_text())


@pytest.mark.slow
def test_every_checkpoint_has_accuracy_and_continuous_metrics(finished_run):
    _, _, outcome = finished_run
    rec = read(outcome.path)
    steps = [c["step"] for c in rec["checkpoints"]]
    assert steps == sorted(set(steps)) and len(steps) == 2
    for entry in rec["checkpoints"]:
        assert set(entry["tasks"]) == set(TASKS)
        for name, m in entry["tasks"].items():
            for key in (
                "acc",
                "acc_stderr",
                "acc_norm",
                "logprob",
                "logprob_per_token",
                "logprob_per_byte",
                "bpb",
                "prob_correct",
                "brier",
                "brier_stderr",
            ):
                assert key in m and math.isfinite(m[key]), (name, key)
            assert 0 <= m["acc"] <= 1 and 0 <= m["prob_correct"] <= 1
    meta = rec["tasks_meta"]
    assert (
        meta["toy_recall@letters"]["setup"] == "letters"
        and meta["toy_recall@letters"]["task"] == "toy_recall"
    )
    assert meta["toy_recall"]["chance"] == pytest.approx(0.25)
    # the variant is scored separately from its base task
    last = rec["checkpoints"][-1]["tasks"]
    assert last["toy_recall"] != last["toy_recall@letters"]


@pytest.mark.slow
def test_continuous_metrics_match_a_hand_computation(finished_run):
    """lm-eval's logged log-likelihoods, recomputed directly from the model's logits."""
    cache, out, outcome = finished_run
    from harness.backfill import _load_checkpoint
    from harness.run_setup import _TASK_RUNNERS
    from train.checkpoint import latest_complete

    runner = next(iter(_TASK_RUNNERS.values()))
    model, tok = _load_checkpoint(latest_complete(outcome.path / "checkpoints"))
    scores = runner.evaluate(model, tok, max_length=256)
    sample = runner.last_samples["toy_recall"][0]
    args = sample["arguments"]
    pairs = [tuple(v.values()) for v in args.values()] if isinstance(args, dict) else args
    lls = []
    for ctx, cont in pairs:
        ctx_ids = tok(ctx, add_special_tokens=False).input_ids
        whole = tok(ctx + cont, add_special_tokens=False).input_ids
        cont_ids = whole[len(ctx_ids) :]
        ids = torch.tensor([ctx_ids + cont_ids])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0, :-1].double(), -1)
        lls.append(sum(float(logp[len(ctx_ids) - 1 + i, t]) for i, t in enumerate(cont_ids)))
    gold = int(sample["target"])
    n_tokens = [len(tok(c, add_special_tokens=False).input_ids) for _, c in pairs]
    mine = item_metrics(lls, gold, [c for _, c in pairs], n_tokens)
    logged = [float(r[0]) for r in sample["filtered_resps"]]
    assert logged == pytest.approx(lls, abs=1e-3)
    p = [math.exp(x) for x in lls]
    assert mine["prob_correct"] == pytest.approx(p[gold] / sum(p), rel=1e-6)
    assert mine["bpb"] == pytest.approx(-lls[gold] / (len(pairs[gold][1].encode()) * math.log(2)))
    brier = sum((pi / sum(p) - (i == gold)) ** 2 for i, pi in enumerate(p))
    assert mine["brier"] == pytest.approx(brier)
    per_item = [
        float(s["filtered_resps"][int(s["target"])][0]) for s in runner.last_samples["toy_recall"]
    ]
    assert scores["toy_recall"]["logprob"] == pytest.approx(sum(per_item) / len(per_item))


def test_item_metrics_by_hand():
    m = item_metrics(
        [math.log(0.5), math.log(0.25), math.log(0.25)], 0, [" ab", " c", " d"], [2, 1, 1]
    )
    assert m["logprob"] == pytest.approx(math.log(0.5))
    assert m["logprob_per_token"] == pytest.approx(math.log(0.5) / 2)
    assert m["logprob_per_byte"] == pytest.approx(math.log(0.5) / 3)
    assert m["bpb"] == pytest.approx(1 / 3)
    assert m["prob_correct"] == pytest.approx(0.5)
    assert m["brier"] == pytest.approx(0.25 + 0.0625 * 2)


@pytest.mark.slow
def test_backfill_adds_a_task_and_skips_what_is_there(finished_run, run_cli):
    cache, out, outcome = finished_run
    before = read(outcome.path)
    args = ["root=" + str(out), f"cache_dir={cache}"] + [
        a
        for a in tiny_overrides(cache, out, tasks=True)
        if a.startswith(("sources.", "tokenizer.", "eval.n_per"))
    ]
    code, _, err = run_cli("eval", *args, "eval=toy", "eval.tasks=[toy_recall,toy_grammar@prefix]")
    assert code == 0, err
    after = read(outcome.path)
    for b, a in zip(before["checkpoints"], after["checkpoints"], strict=True):
        assert a["tasks"]["toy_recall"] == b["tasks"]["toy_recall"]  # kept, not recomputed
        assert "acc" in a["tasks"]["toy_grammar@prefix"]
    assert after["tasks_meta"]["toy_grammar@prefix"]["chance"] == pytest.approx(0.5)
    code, _, err = run_cli("eval", *args, "eval=toy", "eval.tasks=[toy_recall,toy_grammar@prefix]")
    assert code == 0 and "0 checkpoint(s) gained results" in err


@pytest.mark.parametrize(
    "tasks, message",
    [
        ("[toy_recal]", "eval.tasks: unknown task 'toy_recal' (did you mean: toy_recall"),
        ("[toy_recall,toy_recall]", "eval.tasks: task 'toy_recall' is listed twice"),
    ],
)
@pytest.mark.slow
def test_bad_task_names(finished_run, run_cli, tasks, message):
    cache, out, outcome = finished_run
    before = (outcome.path / "record.json").read_bytes()
    args = [f"root={out}", f"cache_dir={cache}", "eval=toy", f"eval.tasks={tasks}"] + [
        a
        for a in tiny_overrides(cache, out, tasks=True)
        if a.startswith(("sources.", "eval.n_per"))
    ]
    code, _, err = run_cli("eval", *args)
    assert code == 2 and message in err
    assert (outcome.path / "record.json").read_bytes() == before


@pytest.mark.slow
def test_backfill_reports_a_checkpoint_that_does_not_load(finished_run, run_cli, tmp_path):
    import shutil

    cache, out, outcome = finished_run
    copy = tmp_path / "sweep"
    shutil.copytree(out, copy)
    run = copy / "runs" / outcome.run_id
    for ckpt in (run / "checkpoints").iterdir():
        (ckpt / "model.safetensors").write_bytes(b"not a model")
    before = (run / "record.json").read_bytes()
    args = [f"root={copy}", f"cache_dir={cache}", "eval=toy", "eval.tasks=[toy_code]"] + [
        a
        for a in tiny_overrides(cache, out, tasks=True)
        if a.startswith(("sources.", "eval.n_per"))
    ]
    code, _, err = run_cli("eval", *args)
    assert code == 2 and "does not load" in err
    # each checkpoint is recorded as failed, with its reason; no score was added
    after = json.loads((run / "record.json").read_bytes())
    assert [c["tasks"] for c in after["checkpoints"]] == [
        c["tasks"] for c in json.loads(before)["checkpoints"]
    ]
    assert all("does not load" in c["failure"] for c in after["checkpoints"])
