"""The chats the critique/revision stage sends to the model.

Turn layout (``[...]`` optional), for a prompt ``P`` (its own turns, ending with
a user turn) and the round's principle ``p``:

* initial answer::

    [system] P...                                        -> answer

* round ``r`` critique (round 1 shown; ``H`` is the conversation so far)::

    [system] EX_1... EX_k...  P...  assistant: answer  user: p.critique          -> critique_1
    [system] EX_1... EX_k...  P...  assistant: answer  user: p.critique
                              assistant: critique_1  user: p.revision            -> revision_1

* round ``r + 1`` continues the same conversation, so the text under critique is
  always the assistant turn right before the critique request::

    ... user: p1.revision  assistant: revision_1  user: p2.critique             -> critique_2

* ``--no-critique`` drops the critique pair: ``... assistant: answer  user: p.revision -> revision``.

``system`` is the prompt's own system turn when it has one, else the
constitution's ``system_prompt`` (none if that is empty). Each few-shot example
``EX`` (the constitution's ``examples``, in order) is its prompt turns, then
``assistant: response, user: critique request, assistant: critique, user:
revision request, assistant: revision``, the requests coming from
:meth:`~cai.constitution.schema.Constitution.example_requests` for the round's
principle. The requests are the constitution's text, unchanged. By default the
few-shot examples are shown for critiques and revisions only: the initial answer
is the policy's plain answer to the prompt. With ``answer_few_shot``
(:class:`~cai.stages.critique.loop.CritiqueConfig`) the answer's chat gets them
too, as demonstrations of good answers, each example's prompt turns followed by
its *revision* (:func:`answer_example_turns`)::

    [system] EX_1.prompt... assistant: EX_1.revision ... EX_k...  P...          -> answer
"""

from __future__ import annotations

from cai.constitution.schema import Constitution, Principle
from cai.core.errors import CaiError
from cai.core.records import Message, as_messages


def split_system(prompt: list[Message], default_system: str | None) -> tuple[str | None, list[Message]]:
    """``(system_text, other_turns)``: the prompt's own leading system turn wins over the default.

    >>> s, turns = split_system([Message(role="user", content="hi")], "Be kind.")
    >>> s, [m.role for m in turns]
    ('Be kind.', ['user'])
    >>> split_system([Message(role="system", content="Pirate."), Message(role="user", content="hi")],
    ...              "Be kind.")[0]
    'Pirate.'
    >>> split_system([Message(role="user", content="hi")], "")[0] is None
    True
    """
    if prompt and prompt[0].role == "system":
        return prompt[0].content, list(prompt[1:])
    return (default_system or None), list(prompt)


def _system(text: str | None) -> list[Message]:
    return [Message(role="system", content=text)] if text else []


def example_turns(constitution: Constitution, principle: Principle, critique: bool = True) -> list[Message]:
    """The constitution's few-shot examples as prior turns, requests resolved for ``principle``.

    >>> from cai.constitution.schema import Example
    >>> p = Principle(id="a", critique="Find harm.", revision="Remove harm.")
    >>> c = Constitution(name="t", version="1", principles=[p],
    ...     examples=[Example(prompt="q", response="bad", critique="it is bad", revision="good")])
    >>> [(m.role, m.content) for m in example_turns(c, p)]  # doctest: +NORMALIZE_WHITESPACE
    [('user', 'q'), ('assistant', 'bad'), ('user', 'Find harm.'), ('assistant', 'it is bad'),
     ('user', 'Remove harm.'), ('assistant', 'good')]
    >>> [m.content for m in example_turns(c, p, critique=False)]
    ['q', 'bad', 'Remove harm.', 'good']
    """
    turns: list[Message] = []
    for i, ex in enumerate(constitution.examples):
        prompt = _example_prompt(constitution, i)
        crit_req, rev_req = constitution.example_requests(ex, principle)
        turns += [*prompt, Message(role="assistant", content=ex.response)]
        if critique:
            turns += [Message(role="user", content=crit_req), Message(role="assistant", content=ex.critique)]
        turns += [Message(role="user", content=rev_req), Message(role="assistant", content=ex.revision)]
    return turns


def _example_prompt(constitution: Constitution, i: int) -> list[Message]:
    prompt = as_messages(constitution.examples[i].prompt)
    if any(m.role == "system" for m in prompt):
        raise CaiError(
            f"constitution {constitution.name!r}: examples.{i}.prompt: has a system turn, which cannot "
            "appear mid-conversation",
            hint="drop the system turn from the example's prompt",
        )
    return prompt


def answer_example_turns(constitution: Constitution) -> list[Message]:
    """The constitution's examples as demonstrations of good answers: prompt turns, then the revision.

    >>> from cai.constitution.schema import Example
    >>> p = Principle(id="a", critique="Find harm.", revision="Remove harm.")
    >>> c = Constitution(name="t", version="1", principles=[p],
    ...     examples=[Example(prompt="q", response="bad", critique="it is bad", revision="good")])
    >>> [(m.role, m.content) for m in answer_example_turns(c)]
    [('user', 'q'), ('assistant', 'good')]
    """
    turns: list[Message] = []
    for i, ex in enumerate(constitution.examples):
        turns += [*_example_prompt(constitution, i), Message(role="assistant", content=ex.revision)]
    return turns


def answer_chat(system: str | None, turns: list[Message],
                few_shot: list[Message] | None = None) -> list[Message]:
    """The chat that asks for the initial answer: ``[system] + [few_shot] + prompt turns``.

    >>> [m.role for m in answer_chat("S", [Message(role="user", content="q")])]
    ['system', 'user']
    >>> shots = [Message(role="user", content="eq"), Message(role="assistant", content="good")]
    >>> [m.content for m in answer_chat(None, [Message(role="user", content="q")], shots)]
    ['eq', 'good', 'q']
    """
    return [*_system(system), *(few_shot or []), *turns]


def critique_chat(
    system: str | None, few_shot: list[Message], conversation: list[Message], principle: Principle
) -> list[Message]:
    """Ask for a critique of the last assistant turn of ``conversation`` (prompt turns, answer, earlier
    rounds).

    >>> p = Principle(id="a", critique="Find harm.", revision="Remove harm.")
    >>> convo = [Message(role="user", content="q"), Message(role="assistant", content="ans")]
    >>> [(m.role, m.content) for m in critique_chat(None, [], convo, p)]
    [('user', 'q'), ('assistant', 'ans'), ('user', 'Find harm.')]
    """
    return [*_system(system), *few_shot, *conversation, Message(role="user", content=principle.critique)]


def revision_chat(
    system: str | None,
    few_shot: list[Message],
    conversation: list[Message],
    principle: Principle,
    critique: str | None,
) -> list[Message]:
    """Ask for a revision: after the critique request and the critique, or directly when ``critique`` is None.

    >>> p = Principle(id="a", critique="Find harm.", revision="Remove harm.")
    >>> convo = [Message(role="user", content="q"), Message(role="assistant", content="ans")]
    >>> [m.content for m in revision_chat("S", [], convo, p, "it harms")]
    ['S', 'q', 'ans', 'Find harm.', 'it harms', 'Remove harm.']
    >>> [m.content for m in revision_chat(None, [], convo, p, None)]
    ['q', 'ans', 'Remove harm.']
    """
    return [*_system(system), *few_shot, *conversation, *round_turns(principle, critique, None)]


def round_turns(principle: Principle, critique: str | None, revision: str | None) -> list[Message]:
    """The turns one round adds to the conversation (the revision left out while it is being asked for).

    >>> p = Principle(id="a", critique="Find harm.", revision="Remove harm.")
    >>> [(m.role, m.content) for m in round_turns(p, "bad", "good")]
    [('user', 'Find harm.'), ('assistant', 'bad'), ('user', 'Remove harm.'), ('assistant', 'good')]
    >>> [m.role for m in round_turns(p, None, "good")]
    ['user', 'assistant']
    """
    turns: list[Message] = []
    if critique is not None:
        turns += [Message(role="user", content=principle.critique),
                  Message(role="assistant", content=critique)]
    turns.append(Message(role="user", content=principle.revision))
    if revision is not None:
        turns.append(Message(role="assistant", content=revision))
    return turns
