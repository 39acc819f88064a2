"""Downstream multiple-choice tasks generated from the toy world, as lm-eval YAML + local JSONL.

Each base task (toy_recall, ...) is written in several evaluation setups; every (task, setup) pair
is its own lm-eval task so results are first-class and named. The '@' name (toy_recall@3shot) is
kept in TaskSpec.name; lm-eval gets toy_recall__3shot because its task names double as file
names, glob patterns and CLI tokens, where '@' is not reliably safe.

Paths in the YAML are absolute: lm-eval hands data_files to datasets.load_dataset, which resolves
relative paths against the process cwd, not the YAML's folder. out_dir is a cache, so absolute
paths are fine.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from common.atomic import write_text
from eval.task_yaml import MC_FIELDS, REQUIRED_FIELDS, read_task_yaml
from toyworld.corpus import person_fields
from toyworld.world import COLOURS, FOODS, PROFESSIONS, SPECIES, World, stable_seed
from train.sources import stdlib_root, stdlib_split_files

TASKS = (
    "toy_recall",
    "toy_twohop",
    "toy_arith",
    "toy_grammar",
    "toy_override",
    "toy_code",
    "toy_facts",
    "toy_unseen",
)
# Setups per task; "" is the default cloze setup.
SETUPS: dict[str, tuple[str, ...]] = {t: ("", "3shot", "letters") for t in TASKS}
SETUPS["toy_grammar"] = ("", "prefix", "3shot")
N_FEWSHOT_POOL = 24
LETTERS = "ABCDEFGH"
INDEX = "index.json"
# index.json's own sha256, written last: its presence means the folder is complete
INDEX_SUM = "index.json.sha256"


@dataclass(frozen=True)
class TaskSpec:
    name: str  # result name, "<task>" or "<task>@<setup>"
    task: str  # base task
    setup: str  # "" for the default setup
    chance: float  # accuracy of uniform guessing
    n_samples: int
    num_fewshot: int
    yaml_path: str
    lm_eval_name: str  # name registered with lm-eval ('@' replaced by '__')


def lm_eval_name(name: str) -> str:
    return name.replace("@", "__")


# ---------------------------------------------------------------- item generators
# An item is {"key", "query", "choices", "gold", ...}; "key" keeps fewshot and test items apart.


def _mc(
    rng: random.Random,
    gold: str,
    pool: Sequence[str],
    k: int = 4,
    must: tuple[str, ...] = (),
) -> tuple[list[str], int]:
    """k choices: gold, the `must` distractors, then random distinct others; gold shuffled in."""
    others = [c for c in dict.fromkeys(pool) if c != gold and c not in must]
    choices = [gold, *must, *rng.sample(others, min(k - 1 - len(must), len(others)))]
    rng.shuffle(choices)
    return choices, choices.index(gold)


_ATTRS = {
    "colour": ("{n}'s favourite colour is", COLOURS),
    "food": ("{n}'s favourite food is", FOODS),
    "profession": ("{n}'s profession is", PROFESSIONS),
}


def _recall(world: World, rng: random.Random) -> dict:
    p = rng.choice(world.seen_people)
    attr = rng.choice(sorted(_ATTRS))
    cloze, pool = _ATTRS[attr]
    fields = person_fields(world, p)
    choices, gold = _mc(rng, fields[attr], pool)
    return {
        "key": f"{p.idx}:{attr}",
        "query": cloze.format_map(fields),
        "choices": choices,
        "gold": gold,
        "person": p.name,
        "attr": attr,
    }


# toy_facts / toy_unseen: one cloze per (person, attribute), each the first train template of
# its fact, so the wording is familiar and only the binding person -> value is tested.
_FACT_CLOZES = {
    "colour": "{n}'s favourite colour is",
    "food": "{n}'s favourite food is",
    "profession": "{n}'s profession is",
    "species": "{n} owns a pet",
    "city": "{n} lives in",
}


def _fact_item(world: World, rng: random.Random, people: list) -> dict:
    p = rng.choice(people)
    attr = rng.choice(sorted(_FACT_CLOZES))
    fields = person_fields(world, p)
    pools = {
        "colour": COLOURS,
        "food": FOODS,
        "profession": PROFESSIONS,
        "species": SPECIES,
        "city": [c.name for c in world.cities],
    }
    choices, gold = _mc(rng, fields[attr], pools[attr])
    return {
        "key": f"{p.idx}:{attr}",
        "query": _FACT_CLOZES[attr].format_map(fields),
        "choices": choices,
        "gold": gold,
        "person": p.name,
        "attr": attr,
    }


def _facts(world: World, rng: random.Random) -> dict:
    # People the corpus writes about (with subject_zipf, some often and most rarely).
    return _fact_item(world, rng, world.seen_people)


def _unseen(world: World, rng: random.Random) -> dict:
    # The same questions about people who never occur in training text: their answers are
    # not in the data, so no amount of scale should lift accuracy above chance.
    return _fact_item(world, rng, world.unseen_people)


def _twohop(world: World, rng: random.Random) -> dict:
    # Only people whose composed fact the corpus never states: the answer needs two hops.
    p = rng.choice([q for q in world.seen_people if not q.country_stated])
    city = world.cities[p.city]
    choices, gold = _mc(rng, world.countries[city.country].name, [c.name for c in world.countries])
    return {
        "key": str(p.idx),
        "query": f"{p.name} lives in the country of",
        "choices": choices,
        "gold": gold,
        "person": p.name,
        "city": city.name,
    }


def _arith(world: World, rng: random.Random) -> dict:
    op = rng.choice("+-*")
    if op == "*":
        a, b = rng.randint(2, 12), rng.randint(2, 12)
        r = a * b
    else:
        a, b = rng.randint(0, 99), rng.randint(0, 99)
        a, b = (max(a, b), min(a, b)) if op == "-" else (a, b)
        r = a + b if op == "+" else a - b
    # Near-miss distractors (off by one / ten / a digit swap) so the task needs real arithmetic.
    near = {r + d for d in (-10, -2, -1, 1, 2, 10)} | {int(str(r)[::-1])}
    pool = [str(x) for x in sorted(near) if x >= 0 and x != r]
    choices, gold = _mc(rng, str(r), pool)
    return {"key": f"{a}{op}{b}", "query": f"{a} {op} {b} =", "choices": choices, "gold": gold}


def _grammar(world: World, rng: random.Random) -> dict:
    p = rng.choice(world.seen_people)
    f = person_fields(world, p)
    if rng.random() < 0.5:
        # Pronoun gender must agree with the world's gender for this person.
        pre = f"{p.name} is a {p.profession}."
        good = f"{f['P']} fed {f['pos']} {p.pet_species}, {p.pet_name}, and gave it fresh water."
        bad_p, bad_pos = ("He", "his") if p.gender == "f" else ("She", "her")
        bad = f"{bad_p} fed {bad_pos} {p.pet_species}, {p.pet_name}, and gave it fresh water."
        kind = "pronoun"
    else:
        # Subject-verb agreement with a plural (coordinated) subject.
        pre = f"{p.name} and {f['friend']}"
        good, bad = "walk to the market together.", "walks to the market together."
        kind = "agreement"
    gold = rng.randrange(2)
    sents = [f"{pre} {bad}", f"{pre} {good}"] if gold else [f"{pre} {good}", f"{pre} {bad}"]
    conts = [bad, good] if gold else [good, bad]
    return {
        "key": f"{p.idx}:{kind}",
        "query": "",
        "choices": sents,
        "gold": gold,
        "prefix": pre,
        "prefix_choices": conts,
        "kind": kind,
    }


def _override(world: World, rng: random.Random) -> dict:
    p = rng.choice(world.seen_people)
    attr = rng.choice(("colour", "food"))
    cloze, pool = _ATTRS[attr]
    fields = person_fields(world, p)
    true = fields[attr]
    ctx = rng.choice([v for v in pool if v != true])
    # The memorised (world) value is always a distractor: recall competes with reading.
    choices, gold = _mc(rng, ctx, pool, must=(true,))
    probe = cloze.format_map(fields)
    return {
        "key": f"{p.idx}:{attr}",
        "query": f"In this story, {probe} {ctx}. {probe}",
        "choices": choices,
        "gold": gold,
        "world_value": true,
    }


_KEYWORDS = (
    "def",
    "return",
    "if",
    "for",
    "import",
    "class",
    "elif",
    "else",
    "while",
    "with",
    "try",
    "raise",
    "except",
    "yield",
    "from",
    "pass",
)
_BLOCK = {"def", "if", "for", "class", "elif", "else", "while", "with", "try", "except"}
_KW_RE = re.compile(r"^([ \t]*)([a-z]+)\b")
# Lines of code before the masked keyword: enough for syntax cues, short enough that a
# 3-shot prompt fits a tiny model's context window.
_CODE_CONTEXT = 4


def _code_items(rng: random.Random, n: int) -> list[dict]:
    # Held-out files of the stdlib_code source: the task probes code the model never trained on.
    files = stdlib_split_files("val")
    order = rng.sample(files, len(files))
    items: list[dict] = []
    seen: set[str] = set()
    root = stdlib_root()
    # Held-out files are few, so each is visited several times; keys keep items distinct.
    for i in range(n * 20):
        if len(items) == n:
            break
        path = order[i % len(order)]
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        cands = []
        for j in range(_CODE_CONTEXT, len(lines)):
            m = _KW_RE.match(lines[j])
            # Block keywords must end the line with ':' to skip prose inside docstrings.
            if (
                m
                and m.group(2) in _KEYWORDS
                and (m.group(2) not in _BLOCK or lines[j].rstrip().endswith(":"))
            ):
                cands.append((j, m))
        if not cands:
            continue
        j, m = rng.choice(cands)
        rel = path.relative_to(root).as_posix()
        if f"{rel}:{j}" in seen:
            continue
        seen.add(f"{rel}:{j}")
        query = "\n".join(lines[j - _CODE_CONTEXT : j]) + "\n" + m.group(1)
        choices, gold = _mc(rng, m.group(2), _KEYWORDS)
        items.append(
            {
                "key": f"{rel}:{j}",
                "query": query,
                "choices": choices,
                "gold": gold,
                "source": f"{rel}:{j + 1}",
            }
        )
    return items


_GEN = {
    "toy_recall": _recall,
    "toy_twohop": _twohop,
    "toy_arith": _arith,
    "toy_grammar": _grammar,
    "toy_override": _override,
    "toy_facts": _facts,
    "toy_unseen": _unseen,
}


def make_items(world: World, task: str, n: int, seed: int = 0) -> list[dict]:
    """Up to n + N_FEWSHOT_POOL items with distinct keys; write_toy_tasks takes the fewshot pool
    from the front. Fewer come back when the world has fewer distinct questions."""
    if task not in TASKS:
        raise ValueError(f"unknown toy task {task!r} (known: {', '.join(TASKS)})")
    rng = random.Random(stable_seed("toytask", world.seed, task, seed))
    want = n + N_FEWSHOT_POOL
    if task == "toy_code":
        return _code_items(rng, want * 2)[:want]
    items: list[dict] = []
    seen: set[str] = set()
    for _ in range(want * 50):  # bounded: tiny worlds may have fewer distinct keys than asked
        it = _GEN[task](world, rng)
        if it["key"] not in seen:
            seen.add(it["key"])
            items.append(it)
            if len(items) == want:
                break
    return items


# ---------------------------------------------------------------- setups and files


def _gold_at(item: dict, i: int) -> dict:
    """The item with its choices rotated so that gold sits at position i mod n_choices: over
    a test set every position holds gold equally often, so a model that always answers "A" in
    the lettered setup scores exactly chance, not chance plus the shuffle's imbalance."""
    n = len(item["choices"])
    shift = (item["gold"] - i) % n
    out = dict(item, choices=item["choices"][shift:] + item["choices"][:shift], gold=i % n)
    if "prefix_choices" in item:
        out["prefix_choices"] = item["prefix_choices"][shift:] + item["prefix_choices"][:shift]
    return out


def _apply_setup(item: dict, setup: str) -> dict:
    row = {"query": item["query"], "choices": item["choices"], "gold": item["gold"]}
    if setup == "letters":
        opts = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(item["choices"]))
        row["query"] = f"{item['query']} ...\n{opts}\nAnswer:"
        row["choices"] = list(LETTERS[: len(item["choices"])])
    elif setup == "prefix":
        row["query"], row["choices"] = item["prefix"], item["prefix_choices"]
    return row


def _task_yaml(
    name: str, task: str, setup: str, test: Path, fewshot: Path | None, chance: float
) -> dict:
    shots = _shots(setup)
    files = {"test": str(test)} | ({"train": str(fewshot)} if fewshot else {})
    cfg = {
        "task": lm_eval_name(name),
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": files},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "query",  # column names: no Jinja, so code with '{{' is safe
        "doc_to_target": "gold",
        "doc_to_choice": "choices",
        # Code continues an indentation prefix, so no space is inserted before the keyword.
        "target_delimiter": "" if task == "toy_code" else " ",
        "num_fewshot": shots,
        "metric_list": [
            {"metric": m, "aggregation": "mean", "higher_is_better": True}
            for m in ("acc", "acc_norm")
        ],
        "metadata": {"version": 1.0, "name": name, "setup": setup, "chance": chance},
    }
    if fewshot:
        cfg |= {"fewshot_split": "train", "fewshot_config": {"sampler": "first_n"}}
    return cfg


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in rows)


def write_toy_tasks(
    world: World,
    out_dir: Path,
    n_per_task: int = 300,
    seed: int = 0,
    final_dir: Path | None = None,
) -> dict[str, TaskSpec]:
    """Write <lm_eval_name>.jsonl/.yaml per (task, setup), index.json with every file's sha256,
    and last index.json's own sha256; return specs. `final_dir`: where the folder will live
    (the YAMLs name their data by absolute path), when it is built elsewhere and moved."""
    out_dir = Path(out_dir).resolve()
    home = Path(final_dir).resolve() if final_dir is not None else out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    specs: dict[str, TaskSpec] = {}
    for task in TASKS:
        items = make_items(world, task, n_per_task, seed)
        # Small worlds may lack distinct keys for n + N_FEWSHOT_POOL items: shrink the pool
        # first (never below 3 shots) so the test set keeps n_per_task items when it can.
        k = min(N_FEWSHOT_POOL, max(3, len(items) - n_per_task))
        pool, test = items[:k], [_gold_at(it, i) for i, it in enumerate(items[k:])]
        if not test:
            raise ValueError(f"toy task {task!r} produced no test items (world too small)")
        n_choices = min(len(it["choices"]) for it in test)
        chance = round(1.0 / n_choices, 6)
        for setup in SETUPS[task]:
            name = f"{task}@{setup}" if setup else task
            stem = lm_eval_name(name)
            write_text(out_dir / f"{stem}.jsonl", _jsonl([_apply_setup(it, setup) for it in test]))
            if setup == "3shot":
                rows = [_apply_setup(it, setup) for it in pool]
                write_text(out_dir / f"{stem}.fewshot.jsonl", _jsonl(rows))
            spec = TaskSpec(
                name,
                task,
                setup,
                chance,
                len(test),
                _shots(setup),
                str(home / f"{stem}.yaml"),
                stem,
            )
            write_text(out_dir / f"{stem}.yaml", _yaml_text(spec, home))
            specs[name] = spec
    index = {
        "version": 2,
        "world_seed": world.seed,
        "n_people": len(world.people),
        "seed": seed,
        "python": _python(),
        "tasks": {k: asdict(v) for k, v in specs.items()},
        "files": {
            p.name: _sha256(p) for p in sorted(out_dir.iterdir()) if p.suffix in (".jsonl", ".yaml")
        },
    }
    index_text = json.dumps(index, indent=1, sort_keys=True) + "\n"
    write_text(out_dir / INDEX, index_text)
    write_text(out_dir / INDEX_SUM, hashlib.sha256(index_text.encode()).hexdigest() + "\n")
    return specs


def _python() -> str:
    return sys.version.split()[0]


def _shots(setup: str) -> int:
    return 3 if setup == "3shot" else 0


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _yaml_text(spec: TaskSpec, folder: Path) -> str:
    """The YAML the generator writes for `spec` in `folder`: also what a cached one must equal,
    so no template or option but the generator's can reach lm-eval (which renders Jinja
    unsandboxed)."""
    test = folder / f"{spec.lm_eval_name}.jsonl"
    fewshot = folder / f"{spec.lm_eval_name}.fewshot.jsonl" if spec.setup == "3shot" else None
    cfg = _task_yaml(spec.name, spec.task, spec.setup, test, fewshot, spec.chance)
    return yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True)


def check_task_yaml(path: Path) -> dict:
    """Parse a task YAML; one-line ValueError naming file and field if a required one is absent."""
    path = Path(path)
    # Generated tasks are data only: tags=False refuses a `!function` tag; an `include:`
    # would let lm-eval load another file (with its own `!function`), so none is allowed.
    cfg = read_task_yaml(path, includes=False, tags=False)
    for key in ("include", "class"):
        if key in cfg:
            raise ValueError(f"{path}: generated task YAML may not use {key!r}")
    required = REQUIRED_FIELDS + (MC_FIELDS if cfg.get("output_type") == "multiple_choice" else ())
    for field in required:
        if cfg.get(field) in (None, ""):
            raise ValueError(f"{path}: task YAML missing required field {field!r}")
    return cfg


def load_task_specs(out_dir: Path) -> dict[str, TaskSpec]:
    """Read index.json written by write_toy_tasks and verify the folder against it: index.json
    against its sha256, every data file against the sha256 in the index, every YAML equal to
    what the generator writes, and nothing else that lm-eval would index or import."""
    out_dir = Path(out_dir)
    index = _verified_index(out_dir)
    specs = {k: TaskSpec(**v) for k, v in index["tasks"].items()}
    listed = {Path(spec.yaml_path).resolve() for spec in specs.values()}
    # lm-eval indexes every YAML in the folder, so one that the index does not list (planted,
    # or left over) or any Python file (a `!function` target) is refused, not merely skipped
    for path in sorted(out_dir.rglob("*")):
        if path.suffix in (".yaml", ".yml") and path.resolve() not in listed:
            raise ValueError(f"{path}: task YAML not written by the toy-task generator")
        if path.suffix == ".py":
            raise ValueError(f"{path}: code file in a generated task folder")
    for spec in specs.values():  # the specific reason first (an include, a missing field)
        check_task_yaml(Path(spec.yaml_path))
    for name, want in index["files"].items():
        path = out_dir / name
        if not path.is_file() or _sha256(path) != want:
            raise ValueError(f"{path}: toy task file does not match its sha256")
    for spec in specs.values():
        path = Path(spec.yaml_path)
        if path.parent.resolve() != out_dir.resolve() or path.read_text(
            encoding="utf-8"
        ) != _yaml_text(spec, out_dir.resolve()):
            raise ValueError(f"{path}: task YAML differs from what the toy-task generator writes")
    return specs


def _verified_index(out_dir: Path) -> dict:
    """index.json, checked against the sha256 written after it and against this Python: the
    toy_code items come from this interpreter's stdlib."""
    index_path = out_dir / INDEX
    if not index_path.is_file():
        raise ValueError(f"{index_path}: toy task index not found (run write_toy_tasks first)")
    text = index_path.read_text(encoding="utf-8")
    sum_path = out_dir / INDEX_SUM
    want = sum_path.read_text().strip() if sum_path.is_file() else None
    if want != hashlib.sha256(text.encode()).hexdigest():
        raise ValueError(f"{index_path}: toy task index does not match its sha256")
    index = json.loads(text)
    if index.get("python") != _python():
        raise ValueError(
            f"{index_path}: toy tasks generated under Python {index.get('python')}, "
            f"this is Python {_python()}"
        )
    return index
