"""sBLIMP-style minimal pairs from a template grammar: all 12 types, one or more subtypes each.

Each generator returns (subtype, grammatical, ungrammatical); the two sentences differ only where the
phenomenon lives (an agreement form, a determiner, a word order, a missing or extra argument).
"""

from __future__ import annotations

import os
import random

from slmjax.synth import benchio, engines, leakage, settings
from slmjax.synth import lexicon as L
from slmjax.synth.errors import SynthError
from slmjax.synth.stories import _a

TYPES = ("anaphor_agreement", "argument_structure", "binding", "control_raising",
         "determiner_noun_agreement", "ellipsis", "filler_gap_dependency", "irregular_forms",
         "island_effects", "npi_licensing", "quantifiers", "subject_verb_agreement")

PEOPLE = (("boy", "boys", "m"), ("girl", "girls", "f"), ("man", "men", "m"), ("woman", "women", "f"),
          ("king", "kings", "m"), ("queen", "queens", "f"), ("father", "fathers", "m"),
          ("mother", "mothers", "f"), ("prince", "princes", "m"), ("princess", "princesses", "f"),
          ("brother", "brothers", "m"), ("sister", "sisters", "f"))
ANIMALS = ("dog", "cat", "fox", "bear", "duck", "frog", "rabbit", "horse", "pig", "goat", "owl", "lamb")
THINGS = tuple(sorted({o for t in L.TOPICS for o in t.objects if " " not in o}))
# Nouns whose plural differs ("these starfish" is no agreement error).
COUNT_NOUNS = tuple(n for n in THINGS + ANIMALS if L.plural(n) != n)
# Objects some verbs take, so that the grammatical side makes sense (no one eats a guitar or throws a boat).
EDIBLE = ("acorn", "cake", "carrot", "cookie", "egg", "muffin", "mushroom", "pie", "seed")
TEARABLE = ("backpack", "book", "jersey", "map", "mitten", "notebook", "painting", "raincoat", "scarf",
            "songbook", "ticket", "umbrella")
PORTABLE = tuple(t for t in THINGS if t not in ("boat", "piano", "sandcastle", "snowman"))
OBJECTS = ((("ate", "eaten"), EDIBLE), (("tore", "torn"), TEARABLE), (("wrote", "written"), ("book", "songbook")),
           (("threw", "thrown", "shook", "shaken", "took", "taken", "stole", "stolen"), PORTABLE))
HUMAN_VERBS = {"wrote", "written", "drew", "drawn", "described", "mentioned", "fixed"}  # no pig writes
IRREGULAR_NOUNS = (("mouse", "mice"), ("child", "children"), ("man", "men"), ("woman", "women"),
                   ("goose", "geese"), ("tooth", "teeth"), ("foot", "feet"), ("sheep", "sheep"))
INTRANS = (("sleeps", "sleep", "slept"), ("runs", "run", "ran"), ("smiles", "smile", "smiled"),
           ("jumps", "jump", "jumped"), ("sings", "sing", "sang"), ("laughs", "laugh", "laughed"),
           ("swims", "swim", "swam"), ("waits", "wait", "waited"), ("cries", "cry", "cried"))
# Bumped when the same seed draws other sentences (2: TRANS_PAST without washed etc.; 3: the fixes
# commented at IRREGULAR_VERBS, OBJECTLESS_ADVS, CONTROL_VERBS, COUNT_NOUNS and OBJECTS, and "snowmen").
ITEMS_VERSION = 3
# Verbs without an intransitive use: "The cat washed yesterday." is grammatical, so no washed here.
TRANS_PAST = ("found", "liked", "fixed", "wanted", "described", "owned", "grabbed", "mentioned", "brought",
              "needed")
INTRANS_PAST = ("slept", "arrived", "laughed", "smiled", "fell", "waited", "cried", "yawned")
# No verb whose past form is also a standard participle ("has hid", "has forgot" are in dictionaries)
# and none that wants a second object ("The boy gave the ball." is odd on the grammatical side).
IRREGULAR_VERBS = (("ate", "eaten"), ("saw", "seen"), ("took", "taken"), ("broke", "broken"),
                   ("shook", "shaken"), ("drew", "drawn"), ("threw", "thrown"), ("tore", "torn"),
                   ("wrote", "written"), ("stole", "stolen"), ("chose", "chosen"))
SEEN = (("seen", "saw"), ("found", "found"), ("liked", "liked"), ("eaten", "ate"), ("taken", "took"))
ADJS = ("happy", "hungry", "sleepy", "tired", "angry", "quiet", "brave")
COLORS = ("red", "blue", "green", "yellow", "big", "small", "old", "new")
PLACES = ("beach", "farm", "garden", "park", "school", "castle", "river", "lake", "station", "market", "zoo",
          "library")
# After an intransitive foil the adverbial must not read as its object: "The cat liked yesterday."
# and "The boy described today." are grammatical (yesterday, today are also nouns).
OBJECTLESS_ADVS = ("at noon", "again", "at night", "after lunch")
# Control verbs only: "There wanted to be a fence." is dialectal English for "there needed to be".
CONTROL_VERBS = ("tried", "decided", "hoped")
ADVS = ("every day", "in the morning", "at night", "after lunch", "near the house", "in the garden")
NUMS = (("two", "three"), ("three", "four"), ("four", "five"), ("two", "five"), ("three", "six"))


def _person(rng, gender=None):
    pool = [p for p in PEOPLE if gender is None or p[2] == gender]
    return rng.choice(pool)


def _name(rng, gender=None):
    if gender == "f":
        return rng.choice(L.FEMALE)
    if gender == "m":
        return rng.choice(L.MALE)
    return rng.choice(L.FEMALE + L.MALE)


def _agent(rng, verb):
    people = tuple(p[0] for p in PEOPLE)
    return rng.choice(people if verb in HUMAN_VERBS else ANIMALS + people)


def _object(rng, verb, default=THINGS):
    return rng.choice(next((pool for verbs, pool in OBJECTS if verb in verbs), default))


def subject_verb_agreement(rng):
    sg, pl, past = rng.choice(INTRANS)
    n = rng.choice(ANIMALS)
    adv = rng.choice(ADVS)
    sub = rng.choice(("simple", "across_prepositional_phrase", "copula"))
    if sub == "simple":
        if rng.random() < 0.5:
            return sub, f"The {n} {sg} {adv}.", f"The {n} {pl} {adv}."
        return sub, f"The {L.plural(n)} {pl} {adv}.", f"The {L.plural(n)} {sg} {adv}."
    if sub == "across_prepositional_phrase":
        other = rng.choice([a for a in ANIMALS if a != n])
        if rng.random() < 0.5:
            return sub, f"The {n} near the {L.plural(other)} {sg} {adv}.", f"The {n} near the {L.plural(other)} {pl} {adv}."
        return sub, f"The {L.plural(n)} near the {other} {pl} {adv}.", f"The {L.plural(n)} near the {other} {sg} {adv}."
    adj, place = rng.choice(ADJS), rng.choice(PLACES)
    if rng.random() < 0.5:
        return sub, f"The {n} at the {place} is {adj}.", f"The {n} at the {place} are {adj}."
    return sub, f"The {L.plural(n)} at the {place} are {adj}.", f"The {L.plural(n)} at the {place} is {adj}."


def determiner_noun_agreement(rng):
    name, verb = _name(rng), rng.choice(("saw", "liked", "found", "wanted", "carried"))
    sub = rng.choice(("this_these", "that_those_with_adjective", "irregular_plural"))
    if sub == "irregular_plural":
        sg, pl = rng.choice([p for p in IRREGULAR_NOUNS if p[0] != p[1]])
    else:
        sg = rng.choice(COUNT_NOUNS)
        pl = L.plural(sg)
    adj = rng.choice(COLORS) + " " if sub == "that_those_with_adjective" else ""
    near, far = ("this", "these") if sub != "that_those_with_adjective" else ("that", "those")
    if rng.random() < 0.5:
        return sub, f"{name} {verb} {near} {adj}{sg}.", f"{name} {verb} {near} {adj}{pl}."
    return sub, f"{name} {verb} {far} {adj}{pl}.", f"{name} {verb} {far} {adj}{sg}."


def anaphor_agreement(rng):
    verb = rng.choice(("hurt", "saw", "washed", "helped", "liked", "drew"))
    sub = rng.choice(("gender", "number"))
    if sub == "gender":
        sg, _, g = _person(rng)
        good, bad = ("himself", "herself") if g == "m" else ("herself", "himself")
        return sub, f"The {sg} {verb} {good}.", f"The {sg} {verb} {bad}."
    sg, pl, g = _person(rng)
    if rng.random() < 0.5:
        return sub, f"The {pl} {verb} themselves.", f"The {pl} {verb} {'himself' if g == 'm' else 'herself'}."
    return sub, f"The {sg} {verb} {'himself' if g == 'm' else 'herself'}.", f"The {sg} {verb} themselves."


def binding(rng):
    verb = rng.choice(("hurt", "saw", "washed", "helped", "liked"))
    say = rng.choice(("said", "thought", "knew", "heard"))
    g1 = rng.choice("mf")
    a, b = _person(rng, g1)[0], _person(rng, "f" if g1 == "m" else "m")[0]
    refl_b = "herself" if g1 == "m" else "himself"
    refl_a = "himself" if g1 == "m" else "herself"
    return "principle_A_domain", f"The {a} {say} that the {b} {verb} {refl_b}.", f"The {a} {say} that the {b} {verb} {refl_a}."


def irregular_forms(rng):
    past, part = rng.choice(IRREGULAR_VERBS)
    who, obj = _agent(rng, past), _object(rng, past)
    if rng.random() < 0.5:
        return "past_tense", f"The {who} {past} the {obj}.", f"The {who} {part} the {obj}."
    return "past_participle", f"The {who} has {part} the {obj}.", f"The {who} has {past} the {obj}."


def argument_structure(rng):
    t, i = rng.choice(TRANS_PAST), rng.choice(INTRANS_PAST)
    who = _agent(rng, t)
    if rng.random() < 0.5:
        obj, adv = rng.choice(THINGS), rng.choice(("yesterday", "today", "at noon", "again"))
        return "transitive", f"The {who} {t} the {obj} {adv}.", f"The {who} {i} the {obj} {adv}."
    adv = rng.choice(OBJECTLESS_ADVS)
    return "intransitive", f"The {who} {i} {adv}.", f"The {who} {t} {adv}."


def quantifiers(rng):
    n, place = rng.choice(ANIMALS), rng.choice(PLACES)
    if rng.random() < 0.5:
        some = _a(n) if rng.random() < 0.5 else f"one {n}"
        bad = rng.choice(("every", "each"))
        return "existential_there", f"There was {some} at the {place}.", f"There was {bad} {n} at the {place}."
    obj, num = rng.choice(THINGS), rng.choice(("two", "three", "four", "five"))
    who = rng.choice(tuple(p[0] for p in PEOPLE))
    return ("superlative", f"No {who} found more than {num} {L.plural(obj)}.",
            f"No {who} found at least {num} {L.plural(obj)}.")


def npi_licensing(rng):
    part, _ = rng.choice(SEEN)
    thing = _object(rng, part, THINGS + ANIMALS)
    if rng.random() < 0.5:
        name = _name(rng)
        return "sentential_negation", f"{name} has not ever {part} {_a(thing)}.", f"{name} has probably ever {part} {_a(thing)}."
    who = L.plural(rng.choice(ANIMALS))
    return "negative_quantifier_licensor", f"No {who} have ever {part} {_a(thing)}.", f"The {who} have ever {part} {_a(thing)}."


def control_raising(rng):
    n, place = rng.choice(ANIMALS), rng.choice(PLACES)
    raise_v, ctrl_v = rng.choice(("seemed", "appeared", "happened")), rng.choice(CONTROL_VERBS)
    return ("existential_there_subject_raising", f"There {raise_v} to be {_a(n)} at the {place}.",
            f"There {ctrl_v} to be {_a(n)} at the {place}.")


def ellipsis(rng):
    a, b = rng.sample(L.FEMALE + L.MALE, 2)
    x, y = rng.choice(NUMS)
    adj, obj = rng.choice(COLORS), L.plural(rng.choice(THINGS))
    verb = rng.choice(("found", "saw", "bought", "had"))
    return ("n_bar", f"{a} {verb} {x} {adj} {obj} and {b} {verb} {y}.",
            f"{a} {verb} {x} {obj} and {b} {verb} {y} {adj}.")


def filler_gap_dependency(rng):
    name, obj = _name(rng), rng.choice(THINGS)
    know = rng.choice(("knew", "saw", "forgot", "asked"))
    verb = rng.choice(TRANS_PAST)
    who = _agent(rng, verb)
    if rng.random() < 0.5 and know != "asked":
        return "wh_vs_that_with_gap", f"{name} {know} what the {who} {verb}.", f"{name} {know} that the {who} {verb}."
    know = "knew" if know == "asked" else know
    return ("wh_vs_that_no_gap", f"{name} {know} that the {who} {verb} the {obj}.",
            f"{name} {know} what the {who} {verb} the {obj}.")


def island_effects(rng):
    name, obj = _name(rng), rng.choice(THINGS)
    verb = rng.choice(("find", "like", "see", "want", "carry"))
    if rng.random() < 0.5:
        return "left_branch_island_simple_question", f"Which {obj} did {name} {verb}?", f"Which did {name} {verb} {obj}?"
    return ("left_branch_island_quantity", f"How many {L.plural(obj)} did {name} {verb}?",
            f"How many did {name} {verb} {L.plural(obj)}?")


GENERATORS = {t: globals()[t] for t in TYPES}


def items(n: int, seed: int, splits=("dev", "test")) -> dict[str, list[tuple[str, str, int, str, str]]]:
    """``n`` pairs per split, types in turn: split -> [(type, subtype, id, good, bad)], no sentence twice.
    Both splits are always drawn, so that a split's items never depend on which splits are asked for."""
    splits = benchio.check_splits(splits)
    rng = random.Random(f"sblimp:{seed}")
    used: set[str] = set()
    ids: dict[tuple[str, str], int] = {}
    out = {}
    for split in benchio.SPLITS:
        rows = []
        for k in range(n):
            typ = TYPES[k % len(TYPES)]
            for _ in range(1000):
                sub, good, bad = GENERATORS[typ](rng)
                if good not in used and bad not in used and good != bad:
                    break
            else:
                raise SynthError(f"sblimp: the {typ} templates ran out of distinct sentences at --n={n}")
            used.update((good, bad))
            i = ids.get((typ, sub), 0)
            ids[(typ, sub)] = i + 1
            rows.append((typ, sub, i, good, bad))
        out[split] = rows
    return {split: out[split] for split in splits}


def build(root: str, n: int, voices: list[engines.Voice], seed: int = 1, workers: int | None = None,
          splits=("dev", "test")) -> dict:
    """Write ``root/syntactic/{split}/`` wavs and gold.csv, and the texts the corpus must avoid."""
    settings.claim(root, "sblimp", {"n": n, "seed": seed, "voices": [v.spec for v in voices], "items": ITEMS_VERSION,
                                     **benchio.split_settings(splits)}, files=[os.path.join(root, "syntactic")])
    sets = items(n, seed, splits)
    stems = benchio.Stems(seed, "sblimp")
    all_texts = []
    for split, pairs in sets.items():
        rows, texts = [], []
        for typ, sub, i, good, bad in pairs:
            for v in voices:
                for text, correct in ((good, 1), (bad, 0)):
                    rows.append({"filename": stems(), "type": typ, "subtype": sub, "id": i, "voice": v.spec,
                                 "transcription": text, "correct": correct})
                    texts.append(text)
        folder = os.path.join(root, "syntactic", split)
        benchio.render_rows(folder, rows, texts, voices, workers, f"sblimp {split}")
        benchio.write_csv(os.path.join(folder, "gold.csv"), benchio.SYNTACTIC_COLUMNS, rows)
        all_texts += texts
    leakage.write(root, "sblimp", sentences=all_texts)
    return {split: len(p) for split, p in sets.items()}
