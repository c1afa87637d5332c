"""The corpus of the course's tiny GPT: short stories from a deterministic generator.

No download: the text is generated from word lists and a few story templates with a
seeded `random.Random`, so every machine produces the same corpus. Stories are simple
and regular, which lets a small character-level model learn them in minutes on a CPU,
and lets us measure whether a sample "looks like the corpus" (`corpus_words`).
"""
from __future__ import annotations

import random
import re

N_STORIES = 6000
CORPUS_SEED = 2024
_WORD = re.compile(r"[A-Za-z]+")

HEROES = [("Tom", "he", "his"), ("Mia", "she", "her"), ("Sam", "he", "his"), ("Lily", "she", "her"),
          ("Ben", "he", "his"), ("Anna", "she", "her"), ("Max", "he", "his"), ("Zoe", "she", "her"),
          ("Leo", "he", "his"), ("Emma", "she", "her"), ("Jack", "he", "his"), ("Lucy", "she", "her")]
ANIMALS = ["cat", "dog", "bird", "fox", "duck", "frog", "rabbit", "bear", "mouse", "owl"]
KINDS = ["little", "big", "kind", "happy", "small", "brave", "shy", "funny"]
COLOURS = ["red", "blue", "green", "yellow", "shiny", "soft", "old", "new"]
THINGS = ["ball", "kite", "hat", "box", "book", "cake", "boat", "drum", "cup", "shoe"]
PLACES = ["park", "garden", "forest", "river", "hill", "yard", "house", "field"]
PLAYS = ["play", "run", "sing", "jump", "dance", "read", "walk", "hide"]
FEELINGS = ["happy", "sad", "scared", "surprised", "excited", "worried"]
HIDING = ["under a tree", "behind a rock", "in the grass", "near the water", "under the bed", "on a big leaf"]


def a(word: str) -> str:
    """The word with its indefinite article: "a cat", "an owl"."""
    return ("an " if word[0] in "aeiou" else "a ") + word


def story(rng: random.Random) -> str:
    """One short story; every choice is drawn from `rng`."""
    name, he, his = rng.choice(HEROES)
    friend, _, _ = rng.choice([h for h in HEROES if h[0] != name])
    animal, pal = rng.sample(ANIMALS, 2)
    kind, colour, thing = rng.choice(KINDS), rng.choice(COLOURS), rng.choice(THINGS)
    place, play = rng.choice(PLACES), rng.choice(PLAYS)
    He = he.capitalize()
    s = [rng.choice([f"Once upon a time, there was {a(kind)} {animal} named {name}.",
                     f"{name} was {a(kind)} {animal} who lived near the {place}.",
                     f"There once was {a(kind)} {animal} called {name}."])]
    s.append(rng.choice([f"{name} liked to {play} in the {place}.",
                         f"Every day, {name} went to the {place} to {play}.",
                         f"{He} loved to {play} with {his} friends."]))
    plot = rng.randrange(3)
    if plot == 0:  # a find, and a friend who wants to share it
        s.append(f"One day, {name} found {a(colour)} {thing} {rng.choice(HIDING)}.")
        s.append(f"{name} was very {rng.choice(['happy', 'surprised', 'excited'])}.")
        s.append(f"Then {name} met {a(pal)} named {friend}.")
        s.append(f"{friend} said, \"Can I play with your {thing}?\"")
        s.append(rng.choice([f"{name} said, \"Yes, let us play together!\"",
                             f"{name} smiled and gave the {thing} to {friend}."]))
        s.append(rng.choice([f"They played with the {thing} until the sun went down.",
                             f"{name} and {friend} became best friends."]))
    elif plot == 1:  # a loss, and a friend who helps
        s.append(f"One day, {name} lost {his} {colour} {thing}.")
        s.append(f"{name} was very {rng.choice(['sad', 'worried', 'scared'])}.")
        s.append(f"{He} looked in the {place}, but the {thing} was not there.")
        s.append(f"{a(pal).capitalize()} named {friend} came to help.")
        s.append(f"{friend} found the {thing} {rng.choice(HIDING)}.")
        s.append(rng.choice([f"{name} said, \"Thank you, {friend}!\"",
                             f"{name} hugged {friend} and said thank you."]))
    else:  # a wish
        s.append(f"One day, {name} wanted {a(colour)} {thing}.")
        s.append(f"{He} asked {his} mother, \"Can I have {a(thing)}, please?\"")
        s.append(rng.choice([f"{his.capitalize()} mother said, \"Yes, if you help me in the {place}.\"",
                             f"{his.capitalize()} mother smiled and said, \"Yes, but first help me in the {place}.\""]))
        s.append(f"So {name} worked hard all day.")
        s.append(f"At night, {name} got {a(colour)} {thing}.")
        s.append(rng.choice([f"{name} was so {rng.choice(['happy', 'excited'])} that {he} could not sleep.",
                             f"{name} went to bed with the {thing} next to {his} head."]))
    return " ".join(s)


def stories(n: int = N_STORIES, seed: int = CORPUS_SEED) -> list[str]:
    """`n` stories from a generator seeded with `seed` (the same list on every run)."""
    rng = random.Random(seed)
    return [story(rng) for _ in range(n)]


def corpus_text(n: int = N_STORIES, seed: int = CORPUS_SEED) -> str:
    """The training text: one story per line."""
    return "\n".join(stories(n, seed)) + "\n"


def corpus_words(text: str) -> set[str]:
    """The set of words of a text (letters only, lowercased)."""
    return {w.lower() for w in _WORD.findall(text)}

