"""k-of-n agreement over answers from independent JSON-RPC endpoints: only ``k`` identical answers
count; a failed endpoint neither agrees nor vetoes; two values reaching ``k`` is a
:class:`QuorumError`. Ordered readings (:func:`quorum_height`, :func:`quorum_fee`) take the
highest value enough readings reach: a minority can only make a height older."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

from lightpost.errors import ConfigError, LightpostError, QuorumError

__all__ = [
    "MAX_RENDER_CHARS",
    "QuorumReport",
    "agree",
    "default_quorum",
    "quorum_fee",
    "quorum_height",
    "reached_by",
    "render_answer",
    "report",
    "validate_quorum",
]

T = TypeVar("T")

MAX_RENDER_CHARS = 80
"""Longest rendering of one answer in an error or report (a QuorumError stays one readable line)."""


def default_quorum(n: int) -> int:
    """Majority of ``n``: ``n // 2 + 1``, so two different values can never both reach it."""
    if n < 1:
        raise ConfigError(f"quorum: need at least one endpoint, got {n}")
    return n // 2 + 1


def validate_quorum(k: int, n: int) -> int:
    """Return ``k`` if ``1 <= k <= n``, else raise :class:`ConfigError`."""
    if n < 1:
        raise ConfigError(f"quorum: need at least one endpoint, got {n}")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
        raise ConfigError(f"quorum: k must be between 1 and the {n} endpoints, got {k!r}")
    return k


def _clip(text: str) -> str:
    if len(text) <= MAX_RENDER_CHARS:
        return text
    return text[: MAX_RENDER_CHARS - 3] + "..."


def render_answer(value: object) -> str:
    """Short, secret-free rendering of one answer (bytes as 0x-hex, clipped)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return _clip("0x" + bytes(value).hex())
    return _clip(repr(value))


def _render_error(exc: Exception) -> str:
    # Lightpost errors are written to carry no secrets (endpoint labels, never URLs);
    # a foreign exception's text might contain a URL with an API key, so only its type.
    if isinstance(exc, LightpostError):
        return _clip(f"error: {exc}")
    return f"error: {type(exc).__name__}"


@dataclass(frozen=True, slots=True, kw_only=True)
class QuorumReport(Generic[T]):
    """What every endpoint said about one question. ``agreed``: the value ``needed`` endpoints gave
    identically, or None (see :attr:`reached`: it may be None); ``answers``: label -> rendering;
    ``dissenters``: labels that differ; ``failed``: labels that raised."""

    question: str
    needed: int
    reached: bool
    agreed: T | None
    answers: Mapping[str, str]
    dissenters: tuple[str, ...]
    failed: tuple[str, ...]
    conflict: bool = False
    """True when two different values each reached ``needed`` (k <= n/2)."""

    def error(self) -> QuorumError:
        """The :class:`QuorumError` that describes this report."""
        question = self.question + (" (conflicting quorums)" if self.conflict else "")
        return QuorumError(question, dict(self.answers), self.needed)


def report(
    answers: Mapping[str, T | Exception],
    k: int,
    *,
    question: str,
    render: Callable[[T], str] = render_answer,
) -> QuorumReport[T]:
    """Group the answers and report whether ``k`` agree (never raises on disagreement;
    :class:`ConfigError` if ``k`` not in 1..len(answers))."""
    validate_quorum(k, len(answers))
    groups: list[tuple[T, list[str]]] = []
    failed: list[str] = []
    rendered: dict[str, str] = {}
    for label, answer in answers.items():
        if isinstance(answer, Exception):
            failed.append(label)
            rendered[label] = _render_error(answer)
            continue
        rendered[label] = render(answer)
        for value, labels in groups:
            if value == answer:
                labels.append(label)
                break
        else:
            groups.append((answer, [label]))
    winners = [(value, labels) for value, labels in groups if len(labels) >= k]
    answering = tuple(label for _, labels in groups for label in labels)
    if len(winners) == 1:
        value, labels = winners[0]
        return QuorumReport(
            question=question,
            needed=k,
            reached=True,
            agreed=value,
            answers=rendered,
            dissenters=tuple(label for label in answering if label not in labels),
            failed=tuple(failed),
        )
    return QuorumReport(
        question=question,
        needed=k,
        reached=False,
        agreed=None,
        answers=rendered,
        dissenters=answering,
        failed=tuple(failed),
        conflict=len(winners) > 1,
    )


def agree(
    answers: Mapping[str, T | Exception],
    k: int,
    *,
    question: str,
    render: Callable[[T], str] = render_answer,
) -> T:
    """The value at least ``k`` endpoints answered identically; :class:`QuorumError` (answers per
    label) when none or two reach ``k``; errors are non-answers."""
    result = report(answers, k, question=question, render=render)
    if not result.reached:
        raise result.error()
    # reached implies agreed was set from an answer of type T (None only if T admits it).
    return cast(T, result.agreed)


def reached_by(values: Sequence[int], need: int) -> int | None:
    """The highest value at least ``need`` (>= 1) of ``values`` reach; None with fewer values."""
    if need < 1 or len(values) < need:
        return None
    return sorted(values, reverse=True)[need - 1]


def _majority(answered: int) -> int:
    return answered // 2 + 1


def quorum_height(heights: Sequence[int], k: int) -> int | None:
    """The height a quorum vouches for: reached by max(k, majority of the answers); None
    when fewer than ``k`` endpoints answered."""
    if len(heights) < k:
        return None
    return reached_by(heights, max(k, _majority(len(heights))))


def quorum_fee(fees: Sequence[int], k: int) -> int | None:
    """The base fee to price with: the value a majority reach (the median, lower middle for an even
    count); None with fewer than ``k`` answers."""
    if len(fees) < k:
        return None
    return reached_by(fees, _majority(len(fees)))
