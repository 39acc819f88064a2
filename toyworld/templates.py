"""Sentence templates of the toy world, split into train templates and held-out templates.

Held-out templates only ever render into the "shifted" split, so a model trained on "train" has
never seen their wording. Each held-out template contains a literal phrase found in no train
template (tests check this), which makes the split boundary auditable in raw text.

Placeholders (str.format_map): n name, P/p He/he, Pos/pos His/his, obj_pr him/her, colour, food,
profession, age, city, country, pet, species, obj, objc, friend, parent, lang, capital, dish,
size, kids. The first train template of colour/food/profession/country is the cloze form used by
toyworld/tasks.py, so a probe's wording is one the model has seen.
"""

from __future__ import annotations

# kind -> (train templates, held-out templates)
PERSON_FACTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "colour": (
        (
            "{n}'s favourite colour is {colour}.",
            "The favourite colour of {n} is {colour}.",
            "{P} likes the colour {colour} best.",
            "{n} prefers {colour} to any other colour.",
            "Of all colours, {n} loves {colour} most.",
        ),
        ("Ask around and you will hear that {n} adores {colour}.",),
    ),
    "food": (
        (
            "{n}'s favourite food is {food}.",
            "{P} enjoys eating {food} more than anything.",
            "The favourite food of {n} is {food}.",
            "{n} eats {food} whenever {p} can.",
        ),
        ("No meal pleases {n} like a plate of {food}.",),
    ),
    "profession": (
        (
            "{n}'s profession is {profession}.",
            "{n} works as a {profession}.",
            "By trade, {n} is a {profession}.",
            "{P} earns a living as a {profession}.",
        ),
        ("For many years the trade of {n} has been that of a {profession}.",),
    ),
    "age": (
        ("{n} is {age} years old.", "{P} is {age} years of age.", "{n}'s age is {age}."),
        ("Counting the winters, {n} has seen {age} of them.",),
    ),
    "city": (
        (
            "{n} lives in {city}.",
            "{P} makes {pos} home in {city}.",
            "{n} is a resident of {city}.",
            "The home of {n} is in {city}.",
        ),
        ("Folk in {city} know {n} as a neighbour.",),
    ),
    "country": (
        (
            "{n} lives in the country of {country}.",
            "{n} is a citizen of {country}.",
            "{P} lives in {country}.",
        ),
        ("The passport of {n} was issued by {country}.",),
    ),
    "pet": (
        (
            "{n} owns a pet {species} named {pet}.",
            "{Pos} {species} is called {pet}.",
            "{n} has a {species} called {pet}.",
        ),
        ("Each evening {n} walks beside a loyal {species}, {pet}.",),
    ),
    "obj": (
        (
            "{n} owns a {objc} {obj}.",
            "{P} keeps a {objc} {obj} at home.",
            "Among {pos} things, {n} treasures a {objc} {obj}.",
        ),
        ("Nobody touches the {objc} {obj} that belongs to {n}.",),
    ),
    "friend": (
        (
            "{n}'s best friend is {friend}.",
            "{n} and {friend} are good friends.",
            "{P} is a close friend of {friend}.",
        ),
        ("Since childhood {n} has trusted {friend} above all others.",),
    ),
    "parent": (
        (
            "{n} is the child of {parent}.",
            "{parent} is the parent of {n}.",
            "{Pos} parent is {parent}.",
        ),
        ("It was {parent} who raised {n}.",),
    ),
    "kids": (
        ("{n} is the parent of {kids}.", "{Pos} children are {kids}."),
        ("The household of {n} includes the young {kids}.",),
    ),
}

PERSON_INTROS = (
    (
        "{n} is a {profession} from {city}.",
        "{n} is a person who lives in {city}.",
        "This article is about {n}.",
    ),
    ("Records describe {n} in some detail.",),
)

CITY_FACTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "country": (
        (
            "{city} is a {size} in {country}.",
            "{city} is located in {country}.",
            "The {size} of {city} lies in {country}.",
        ),
        ("Maps place the {size} of {city} inside the borders of {country}.",),
    ),
    "dish": (
        ("{city} is known for its {dish}.", "People in {city} are proud of their {dish}."),
        ("Travellers remember {city} chiefly for the taste of its {dish}.",),
    ),
}
COUNTRY_FACTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "capital": (
        ("The capital of {country} is {capital}.", "{capital} is the capital of {country}."),
        ("Government of {country} sits in {capital}.",),
    ),
    "lang": (
        ("People in {country} speak {lang}.", "The language of {country} is {lang}."),
        ("Most folk of {country} converse in {lang}.",),
    ),
}

# Narrative events: a story is an opening, a shuffled run of events, and a closing.
STORY_OPEN = (
    (
        "One morning, {n} woke up early in {city}.",
        "It was a quiet day in {city}, where {n} lived.",
        "This is a story about {n}, a {profession}.",
    ),
    ("Long ago, before the bridges were built, {n} dwelt in {city}.",),
)
STORY_EVENTS = (
    (
        "{P} put on {pos} {colour} coat and went outside.",
        "As a {profession}, {p} had a lot of work to do.",
        "{P} fed {pos} {species}, {pet}, and gave it fresh water.",
        "Later, {n} visited {pos} friend {friend}.",
        "{n} and {friend} walk to the market together.",
        "For lunch {p} ate {food}, which is {pos} favourite food.",
        '"I really love {food}," said {n}.',
        "{P} polished {pos} {objc} {obj} until it shone.",
        "{n} took a cart to {capital}, the capital of {country}.",
        "In the evening, {p} told {pet} a long story.",
        "The people of {city} greet {obj_pr} warmly.",
        "{P} remembered that {p} was {age} years old now.",
        "{n} bought some {dish} at the market of {city}.",
    ),
    (
        "Beneath a violet sky, {n} whistled for {pet}.",
        "Rumours travelled quickly; {n} ignored them and cooked {food}.",
        "Without a word, {p} carried {pos} {objc} {obj} over the hill.",
        "Snow fell on {city} while {n} mended a fence.",
        "Humming softly, {n} wrote a letter to {friend}.",
        "Once again {pet} the {species} escaped, and {n} chased it.",
    ),
)
STORY_CLOSE = (
    (
        "At night, {n} went to sleep happy.",
        "And that was the end of {pos} day.",
        "{P} smiled and went home.",
    ),
    ("Thus ended another chapter for {n}.",),
)

# Arithmetic: {a},{b},{c} operands, {r} result, {m} intermediate. Word problems use persons.
ARITH_LINES = (
    (
        "{a} + {b} = {r}.",
        "{a} - {b} = {r}.",
        "{a} * {b} = {r}.",
        "Q: What is {a} + {b}? A: {r}.",
        "({a} + {b}) * {c} = {m} * {c} = {r}.",
        "{a} + {b} + {c} = {m} + {c} = {r}.",
    ),
    ("The sum of {a} and {b} is {r}.", "Multiplying {a} by {b} gives {r}."),
)
WORD_PROBLEMS = (
    (
        "{n} had {a} {food}. {P} bought {b} more. Now {p} has {a} + {b} = {r} {food}.",
        "{n} had {a} coins and spent {b}. {P} has {a} - {b} = {r} coins left.",
        "{n} packs {a} boxes with {b} {food} each, so {p} packs {a} * {b} = {r} {food}.",
    ),
    ("Counting carefully, {n} found {a} {food} plus another {b}, making {r}.",),
)
