"""A seeded grammar of short children's stories with one topic each.

Every story follows setting -> goal -> problem -> resolution (success or failure) -> ending, with one
character, one topic (lexicon.TOPICS) whose place and object recur, and an ending that agrees with the
resolution. ``story(seed, index)`` is a pure function of its arguments, so the corpus, the benchmarks
and a rerun all see the same stories.

Forms: ``short`` stories have exactly five sentences (four of context, then the ending: the StoryCloze
shape); ``long`` ones add optional sentences (6-9 in all). The corpus mixes both.
"""

from __future__ import annotations

import dataclasses
import random
import re

from slmjax.synth import lexicon as L

# Bumped when a seed's stories read otherwise; the corpus, StoryCloze and sWUGGY settings record it
# (2: the plurals snowmen, reindeer, bowls of dough, boxes of paint; 3: sad endings that do not say
# the object was gone, which contradicted failures that break it).
TEXT_VERSION = 3


@dataclasses.dataclass(frozen=True)
class Story:
    """A story's sentences (ending last), its topic, outcome, and the ending of the other outcome."""

    seed: int
    index: int
    topic: str
    name: str
    success: bool
    sentences: tuple[str, ...]
    flipped_ending: str   # same characters and topic, opposite outcome: contradicts the context

    @property
    def text(self) -> str:
        return " ".join(self.sentences)

    @property
    def context(self) -> tuple[str, ...]:
        return self.sentences[:-1]

    @property
    def ending(self) -> str:
        return self.sentences[-1]


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _a(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


class _Cast:
    """The words one story is built from, drawn once so that every sentence repeats them."""

    def __init__(self, rng: random.Random):
        self.topic = rng.choice(L.TOPICS)
        kind, who = rng.choice(L.KINDS)
        female = who == "f" or (who == "a" and rng.random() < 0.5)
        self.name = rng.choice(L.FEMALE if female else L.MALE)
        self.kind, self.trait = kind, rng.choice(L.TRAITS)
        self.pro, self.pos = ("she", "her") if female else ("he", "his")
        t = self.topic
        self.place = rng.choice(t.places)
        self.obj = rng.choice(t.objects)
        self.creature = rng.choice(t.creatures)
        self.act, self.act_past = rng.choice(t.acts)
        self.adj = rng.choice(t.adjs)
        self.happy, self.sad = rng.choice(L.HAPPY), rng.choice(L.SAD)

    def fill(self, template: str) -> str:
        return template.format(obj=self.obj, name=self.name, pos=self.pos, place=self.place)


def _opening(c: _Cast, rng: random.Random, short: bool) -> list[str]:
    if short:
        return [rng.choice((
            f"{c.name} the {c.trait} {c.kind} loved to {c.act} at the {c.place}.",
            f"Once upon a time, {_a(c.trait)} {c.kind} named {c.name} lived near the {c.place}.",
            f"Every day, {c.name} the {c.kind} went to the {c.place} to {c.act}.",
        ))]
    intro = rng.choice((
        f"Once upon a time, there was {_a(c.trait)} {c.kind} named {c.name}.",
        f"There once was {_a(c.trait)} {c.kind} called {c.name}.",
        f"{c.name} was {_a(c.trait)} {c.kind} with a big smile.",
    ))
    setting = rng.choice((
        f"{c.name} loved to {c.act} at the {c.place}.",
        f"Every day, {c.pro} went to the {c.place} to {c.act}.",
        f"{_cap(c.pro)} lived near the {c.place} and liked to {c.act}.",
    ))
    out = [intro, setting]
    if rng.random() < 0.5:
        other = rng.choice([o for o in c.topic.objects if o != c.obj])
        out.append(rng.choice((
            f"At the {c.place}, there were many {L.plural(c.creature)} and {c.adj} {L.plural(other)}.",
            f"{_cap(c.pos)} best friend was {_a(c.adj)} {c.creature} who also loved the {c.place}.",
            f"{c.name} and a {c.creature} often {c.act_past} together at the {c.place}.",
        )))
    return out


def _middle(c: _Cast, rng: random.Random, short: bool, success: bool) -> list[str]:
    goal = rng.choice((
        f"One day, {c.name} took {c.pos} {c.adj} {c.obj} to the {c.place}.",
        f"One morning, {c.name} found {_a(c.adj)} {c.obj} at the {c.place}.",
        f"One day, {c.name} got {_a(c.adj)} {c.obj} as a gift and wanted to {c.act}.",
    ))
    problem = "But then " + c.fill(rng.choice(c.topic.problems)) + "."
    out = [goal, problem]
    if not short and rng.random() < 0.5:
        out.append(rng.choice((
            f"{c.name} felt {c.sad} and called for help.",
            f"{c.name} looked everywhere for the {c.obj}.",
            f"A {c.creature} saw what happened and came to help {c.name}.",
        )))
    if success:
        out.append(f"So {c.name} and {c.pos} friend the {c.creature} " + c.fill(rng.choice(c.topic.fixes)) + ".")
    else:
        out.append(f"{c.name} tried and tried, but " + c.fill(rng.choice(c.topic.fails)) + ".")
    return out


def _ending(c: _Cast, rng: random.Random, success: bool) -> str:
    joy = c.fill(rng.choice(c.topic.joys))
    if success:
        return rng.choice((
            f"{c.name} felt {c.happy} and loved to {joy} every day.",
            f"Now {c.name} was {c.happy}, and {c.pro} could {joy} again.",
            f"{c.name} smiled, because the {c.obj} was safe and {c.pro} could {joy}.",
        ))
    return rng.choice((
        f"{c.name} felt {c.sad} and cried, because the {c.obj} could not be saved.",
        f"{c.name} was {c.sad} and did not want to {joy} that day.",
        f"{c.name} went home {c.sad} and thought about the {c.obj} all night.",
    ))


def story(seed: int, index: int, form: str = "mixed") -> Story:
    """Story number ``index`` of seed ``seed``; form is 'short', 'long' or 'mixed' (30% short)."""
    rng = random.Random((int(seed) << 40) ^ int(index))
    short = form == "short" or (form == "mixed" and rng.random() < 0.3)
    c = _Cast(rng)
    success = rng.random() < 0.6
    sentences = _opening(c, rng, short) + _middle(c, rng, short, success)
    end_state = rng.getstate()
    ending = _ending(c, rng, success)
    rng.setstate(end_state)
    flipped = _ending(c, rng, not success)
    sentences.append(ending)
    if not short and rng.random() < 0.4:
        sentences.append(f"From that day on, {c.name} always kept {c.pos} {c.obj} safe at the {c.place}."
                         if success else f"From that day on, {c.name} was more careful at the {c.place}.")
    return Story(seed, index, c.topic.name, c.name, success, tuple(sentences), flipped)


_WORD = re.compile(r"[a-z']+")


def words(text: str) -> list[str]:
    """Lower-cased word tokens of a text (letters and apostrophes)."""
    return _WORD.findall(text.lower())


def word_counts(seed: int, n: int) -> "collections.Counter[str]":
    """How often each word occurs in stories ``0..n-1`` of ``seed`` (the generator's lexicon and frequencies)."""
    import collections

    counts: collections.Counter[str] = collections.Counter()
    for i in range(n):
        counts.update(words(story(seed, i).text))
    return counts
