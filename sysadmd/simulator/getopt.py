"""Option words read as getopt(3), and sh's getopts, read them: the one walk the
simulated tools share, each printing its own tool's complaints.

Options are single letters after ``-``, grouped (``-fq``); a letter followed by ``:`` in
the option string takes a value, the rest of its word or the next word. Reading stops at
the first word that is not an option, at ``-`` and after ``--``; nothing is reordered.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal, NamedTuple


class Option(NamedTuple):
    """One letter read: its value ("" for a flag), or the problem with it."""

    letter: str
    value: str
    problem: Literal["illegal", "missing"] | None = None


class OptionReader:
    """Iterate over the options of ``args``; ``operands`` is what follows them."""

    def __init__(self, args: list[str], optstring: str) -> None:
        self._args = args
        self._optstring = optstring
        self._index = 0

    @property
    def operands(self) -> list[str]:
        return self._args[self._index :]

    def __iter__(self) -> Iterator[Option]:
        args = self._args
        while self._index < len(args):
            word = args[self._index]
            if word == "--":
                self._index += 1
                return
            if not word.startswith("-") or word == "-":
                return
            self._index += 1
            position = 1
            while position < len(word):
                letter = word[position]
                position += 1
                at = self._optstring.find(letter)
                if letter == ":" or at < 0:
                    yield Option(letter, "", "illegal")
                    continue
                if self._optstring[at + 1 : at + 2] != ":":
                    yield Option(letter, "")
                    continue
                if position < len(word):
                    yield Option(letter, word[position:])
                elif self._index < len(args):
                    self._index += 1
                    yield Option(letter, args[self._index - 1])
                else:
                    yield Option(letter, "", "missing")
                break
