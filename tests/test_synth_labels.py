"""Label errors of the generated benchmark items: a "correct" side that is wrong English, an
"incorrect" side that is grammatical for some word choice, or two sides that read the same."""

import random
import shutil

import pytest

from slmjax.synth import leakage, phonemes, sblimp, stories, swuggy
from slmjax.synth import lexicon as L

# Plurals the rules alone get wrong, for nouns of the story lexicon.
PLURALS = {"snowman": "snowmen", "reindeer": "reindeer", "starfish": "starfish", "fish": "fish",
           "bowl of dough": "bowls of dough", "box of paint": "boxes of paint", "toy mouse": "toy mice",
           "scarf": "scarves", "deer": "deer"}
BAD_PLURALS = {"snowmans", "reindeers", "doughs", "starfishes", "mouses", "scarfs"}
# Past forms that dictionaries also give as past participles ("has hid", "has forgot", "has bit").
PARTICIPLE_VARIANTS = {"hid", "forgot", "bit", "got", "beat", "dove", "proved", "sank", "shrank", "sang",
                       "drank", "rang", "swam", "sprang", "stank", "spat", "lit", "strove"}
WANTS_A_RECIPIENT = {"gave", "handed", "lent", "put", "showed", "told"}
NOMINAL_ADVERBS = {"yesterday", "today", "tonight", "tomorrow"}  # "The cat liked yesterday." is fine
# "There wanted to be ..." (Scots, northern English: "needed to be") is no control error to everyone.
NOT_CONTROL = {"wanted", "needed", "seemed", "appeared", "happened", "began", "continued"}


def _draws(typ, n=3000):
    rng = random.Random(f"labels:{typ}")
    return [sblimp.GENERATORS[typ](rng) for _ in range(n)]


def _words(sentence):
    return leakage.normalize(sentence).split()


def test_lexicon_plurals():
    nouns = {n for t in L.TOPICS for n in t.places + t.objects + t.creatures} | {k for k, _ in L.KINDS}
    assert {"snowman", "reindeer", "bowl of dough", "box of paint"} <= nouns
    assert {n: L.plural(n) for n in PLURALS} == PLURALS
    assert not {w for n in nouns for w in L.plural(n).split()} & BAD_PLURALS


def test_story_words_hold_no_malformed_plural():
    # sWUGGY takes its in-vocabulary words from the stories: "snowmans" would be a "real word" there
    assert not set(swuggy.vocabulary()[0]) & BAD_PLURALS


@pytest.mark.parametrize("typ", sblimp.TYPES)
def test_the_two_sides_of_a_pair_differ_and_use_real_plurals(typ):
    for _, good, bad in _draws(typ):
        assert leakage.normalize(good) != leakage.normalize(bad), good
        assert not set(_words(good)) & BAD_PLURALS, good


def test_irregular_foils_are_not_standard_variants():
    draws = _draws("irregular_forms")
    pasts = {_words(good)[2] for sub, good, _ in draws if sub == "past_tense"}
    foils = {_words(bad)[3] for sub, _, bad in draws if sub == "past_participle"}
    assert pasts == foils == {p for p, _ in sblimp.IRREGULAR_VERBS}
    assert not foils & PARTICIPLE_VARIANTS, sorted(foils & PARTICIPLE_VARIANTS)
    assert not pasts & WANTS_A_RECIPIENT, sorted(pasts & WANTS_A_RECIPIENT)


def test_no_intransitive_foil_takes_its_adverb_as_an_object():
    foils = [_words(bad) for sub, _, bad in _draws("argument_structure") if sub == "intransitive"]
    after_verb = {w[3] for w in foils}
    assert after_verb and not after_verb & NOMINAL_ADVERBS, sorted(after_verb & NOMINAL_ADVERBS)


def test_raising_foils_use_control_verbs():
    foils = {_words(bad)[1] for _, _, bad in _draws("control_raising")}
    assert foils and not foils & NOT_CONTROL, sorted(foils & NOT_CONTROL)


# Words that the sWUGGY non-words of seeds 2 and 3 sounded like ("moad" is "mode", "riem" "ream").
HOMOPHONE_PARTNERS = ("mode", "mowed", "ream", "joe", "beaks", "righted", "lease")


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_no_nonword_sounds_like_a_listed_word(monkeypatch):
    heard = frozenset(phonemes.phonemize(list(HOMOPHONE_PARTNERS)))
    monkeypatch.setattr(swuggy, "word_list_pronunciations", lambda word_list: heard)
    for seed in (2, 3):
        pairs = [p for rows in swuggy.items(20, seed=seed).values() for p in rows]
        assert len(pairs) >= 36 and not {p["nonword_phones"] for p in pairs} & heard


# Failures that leave the object there, broken or spoiled: a sad ending must not say it was gone.
STILL_THERE = ("stayed broken", "too broken", "torn", "burned", "chewed", "ruined", "broke into pieces",
               "soaked", "no flour")


def test_sad_endings_agree_with_failures_that_break_the_object():
    broken = [s for s in (stories.story(0, i, form="short") for i in range(3000))
              if not s.success and any(m in s.context[-1] for m in STILL_THERE)]
    assert len(broken) > 50
    for s in broken:
        assert "gone" not in s.ending and "missing" not in s.ending, s.sentences


# What the grammatical side must not say: an animal writing or describing, eating a guitar,
# throwing a boat.
HUMAN_ACTS = {"wrote", "written", "drew", "drawn", "described", "mentioned", "fixed", "read", "said"}
FOOD = {"acorn", "cake", "carrot", "cookie", "egg", "muffin", "mushroom", "pie", "seed", "apple", "bone"}
CARRIED_OFF = {"threw", "thrown", "took", "taken", "stole", "stolen", "shook", "shaken", "carried"}
IMMOVABLE = {"boat", "piano", "sandcastle", "snowman", "castle", "house"}


@pytest.mark.parametrize("typ", ["irregular_forms", "argument_structure", "filler_gap_dependency",
                                 "npi_licensing"])
def test_verbs_get_sensible_subjects_and_objects(typ):
    animals = set(sblimp.ANIMALS) | {L.plural(a) for a in sblimp.ANIMALS}
    for _, good, _ in _draws(typ):
        w = _words(good)
        for i, verb in enumerate(w):
            subject = w[i - 2] if w[i - 1] in ("has", "have") else w[i - 1]
            assert not (verb in HUMAN_ACTS and subject in animals), good
            assert verb not in ("ate", "eaten") or w[-1] in FOOD, good
            assert not (verb in CARRIED_OFF and w[-1] in IMMOVABLE), good
