"""Entities, attributes and relations of the synthetic toy world (no text rendering here).

The world is a pure function of its seed: every random draw goes through a ``random.Random``
seeded from a stable hash, never Python's per-process ``hash()`` of a str.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, field

COLOURS = (
    "red",
    "blue",
    "green",
    "yellow",
    "purple",
    "orange",
    "white",
    "black",
    "grey",
    "pink",
    "brown",
    "silver",
)
FOODS = (
    "bread",
    "rice",
    "apples",
    "cheese",
    "soup",
    "fish",
    "noodles",
    "pears",
    "honey",
    "beans",
    "plums",
    "dumplings",
    "carrots",
    "figs",
)
PROFESSIONS = (
    "baker",
    "farmer",
    "teacher",
    "doctor",
    "sailor",
    "painter",
    "miller",
    "weaver",
    "potter",
    "singer",
    "builder",
    "tailor",
    "merchant",
    "hunter",
    "scribe",
    "smith",
)
SPECIES = ("cat", "dog", "horse", "goat", "parrot", "rabbit", "owl", "fox")
OBJECTS = ("lamp", "drum", "kettle", "boat", "flute", "clock", "cart", "mirror", "bell", "kite")
CITY_SIZES = ("village", "town", "city", "port")

# Syllable inventory for pronounceable names; gendered endings let a model also learn
# pronoun agreement from the name itself, as in natural language.
_ONSETS = (
    "b",
    "br",
    "d",
    "dr",
    "f",
    "g",
    "k",
    "kr",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "st",
    "t",
    "th",
    "v",
    "z",
    "sh",
    "h",
    "j",
    "tr",
    "gl",
)
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ei", "ou", "ia", "ee")
_CODAS = ("n", "r", "l", "s", "m", "th", "k", "nd", "rt")
_FEMALE_END = ("a", "ia", "elle", "ine", "ora", "essa")
_MALE_END = ("o", "an", "ur", "ek", "im", "ald")
_CITY_END = ("ton", "mar", "dell", "vik", "burg", "haven", "ford", "ley")
_COUNTRY_END = ("ia", "land", "stan", "ovia", "mark", "ara")


_TRIPLE_VOWEL = re.compile(r"[aeiou]{3}", re.IGNORECASE)


def stable_seed(*parts: object) -> int:
    """64-bit seed from parts via blake2b, identical across processes (unlike hash())."""
    key = "|".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")


@dataclass
class Person:
    idx: int
    name: str
    gender: str  # "f" | "m"; drives pronouns
    age: int
    colour: str
    food: str
    profession: str
    city: int  # index into World.cities
    friend: int  # index into World.people (always a seen person)
    parent: int | None  # index into World.people (seen), or None
    pet_name: str
    pet_species: str
    obj: str
    obj_colour: str
    unseen: bool  # only ever appears in the "shifted" split
    country_stated: bool  # True: corpus states the composed fact "X lives in the country K"


@dataclass
class City:
    idx: int
    name: str
    country: int
    size: str
    dish: str  # food the city is known for


@dataclass
class Country:
    idx: int
    name: str
    language: str
    capital: int  # index into World.cities


@dataclass
class World:
    seed: int
    people: list[Person]
    cities: list[City]
    countries: list[Country]
    children: dict[int, list[int]] = field(default_factory=dict)

    @property
    def seen_people(self) -> list[Person]:
        return [p for p in self.people if not p.unseen]

    @property
    def unseen_people(self) -> list[Person]:
        return [p for p in self.people if p.unseen]

    def country_of(self, person: Person) -> Country:
        """Two-hop fact: person -> city -> country."""
        return self.countries[self.cities[person.city].country]


def _syllable(rng: random.Random, coda: bool) -> str:
    s = rng.choice(_ONSETS) + rng.choice(_VOWELS)
    return s + rng.choice(_CODAS) if coda else s


def _unique(rng: random.Random, used: set[str], make) -> str:
    # Rejection sampling; the name space (~10^6 per style) is far larger than any world.
    while True:
        name = make(rng).capitalize()
        # Triple vowels ("Teeek") are hard to read and tokenize oddly; reject them.
        if name not in used and len(name) <= 14 and not _TRIPLE_VOWEL.search(name):
            used.add(name)
            return name


# The one place the toy world's defaults live (conf/sources/default.yaml states the same
# values explicitly); train.sources and harness.data_prep read them through world_options().
DEFAULT_WORLD_SEED = 0
DEFAULT_N_ENTITIES = 400


def world_options(options: dict) -> tuple[int, int]:
    """(world seed, number of entities) of a toyworld source's options, defaults filled in."""
    return (
        int(options.get("world_seed", DEFAULT_WORLD_SEED)),
        int(options.get("n_entities", DEFAULT_N_ENTITIES)),
    )


def world_from_options(options: dict) -> World:
    """The world a toyworld source's options describe (world_seed, n_entities, n_unseen)."""
    seed, n_entities = world_options(options)
    n_unseen = options.get("n_unseen")
    return make_world(seed, n_entities, None if n_unseen is None else int(n_unseen))


def make_world(
    seed: int, n_entities: int = DEFAULT_N_ENTITIES, n_unseen: int | None = None
) -> World:
    """Build a world with ``n_entities`` people; places scale with it (~1 city per 12 people,
    ~1 country per 5 cities). ``n_unseen`` people (default: 10%, at least 2) are 'unseen'
    (shifted split only); for half of the seen people the corpus never states the composed
    person->country fact (two-hop probes)."""
    if n_entities < 20:
        raise ValueError(f"toyworld n_entities must be >= 20, got {n_entities}")
    if n_unseen is not None and not 2 <= n_unseen <= n_entities // 2:
        raise ValueError(f"toyworld n_unseen must be in [2, n_entities/2], got {n_unseen}")
    rng = random.Random(stable_seed("world", seed, n_entities))
    used: set[str] = set()
    n_cities = max(6, n_entities // 12)
    n_countries = max(4, n_cities // 5)

    countries = [
        Country(
            i, _unique(rng, used, lambda r: _syllable(r, False) + r.choice(_COUNTRY_END)), "", -1
        )
        for i in range(n_countries)
    ]
    for c in countries:
        c.language = c.name.rstrip("aeiou") + "ish"
    cities = []
    for i in range(n_cities):
        # Round-robin first so every country has at least one city (and a capital).
        country = i if i < n_countries else rng.randrange(n_countries)
        name = _unique(rng, used, lambda r: _syllable(r, r.random() < 0.5) + r.choice(_CITY_END))
        cities.append(City(i, name, country, rng.choice(CITY_SIZES), rng.choice(FOODS)))
    for c in countries:
        c.capital = min(ci.idx for ci in cities if ci.country == c.idx)

    firsts_f = [
        _unique(rng, used, lambda r: _syllable(r, False) + r.choice(_FEMALE_END))
        for _ in range(max(12, n_entities // 8))
    ]
    firsts_m = [
        _unique(rng, used, lambda r: _syllable(r, False) + r.choice(_MALE_END))
        for _ in range(max(12, n_entities // 8))
    ]
    surnames = [
        _unique(rng, used, lambda r: _syllable(r, False) + _syllable(r, True))
        for _ in range(max(20, n_entities // 6))
    ]
    pet_names = [
        _unique(rng, used, lambda r: _syllable(r, False) + _syllable(r, False))
        for _ in range(max(20, n_entities // 4))
    ]

    full: set[str] = set()
    n_unseen = max(2, n_entities // 10) if n_unseen is None else n_unseen
    people: list[Person] = []
    for i in range(n_entities):
        gender = "f" if rng.random() < 0.5 else "m"
        while True:
            name = f"{rng.choice(firsts_f if gender == 'f' else firsts_m)} {rng.choice(surnames)}"
            if name not in full:
                full.add(name)
                break
        people.append(
            Person(
                idx=i,
                name=name,
                gender=gender,
                age=rng.randint(18, 89),
                colour=rng.choice(COLOURS),
                food=rng.choice(FOODS),
                profession=rng.choice(PROFESSIONS),
                city=rng.randrange(n_cities),
                friend=-1,
                parent=None,
                pet_name=rng.choice(pet_names),
                pet_species=rng.choice(SPECIES),
                obj=rng.choice(OBJECTS),
                obj_colour=rng.choice(COLOURS),
                unseen=i >= n_entities - n_unseen,
                country_stated=rng.random() < 0.5,
            )
        )
    n_seen = n_entities - n_unseen
    children: dict[int, list[int]] = {}
    for p in people:
        # Relations only point at seen people so train text never leaks an unseen name.
        while p.friend < 0 or p.friend == p.idx:
            p.friend = rng.randrange(n_seen)
        if rng.random() < 0.5:
            cand = rng.randrange(n_seen)
            if cand != p.idx and people[cand].age >= p.age + 18:
                p.parent = cand
                if not p.unseen:
                    children.setdefault(cand, []).append(p.idx)
    return World(seed=seed, people=people, cities=cities, countries=countries, children=children)
