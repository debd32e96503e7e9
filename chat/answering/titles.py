"""Conversation titles: once a conversation's first turn is answered, the model is asked for a
title of a few words, on the reply engine's loop, beside the replies and never in their way.

A title is a task of its own, scheduled after the reply is stored and its successor handed on:
a reply never waits for it, and a title that fails (the model, the store) leaves the
conversation untitled and the reply as it was. The database decides whether there is anything
to do (claim_conversation_title: once per conversation, never over a title its owner set, only
while the owner has tokens left today) and counts the title's tokens against that quota
(set_conversation_title), so a title costs its owner what it costs the operator."""

from __future__ import annotations

import asyncio
import re
import time

import structlog

from chat.errors import ChatError
from chat.logging import get_logger
from chat.ports import ChatModel, ReplyStore

logger = get_logger(__name__)

INSTRUCTION = (
    "Write a title for the conversation below: a few words (at most six) that say what it is about, "
    "in the conversation's language. Answer with the title alone, without quotes or a final full stop."
)
# The first turn may be long (32,000 characters a message): its start says what it is about, and
# a title's prompt is paid for like any other.
TURN_SOURCE_CHARS = 2000
MAX_TITLE_CHARS = 80  # what set_conversation_title keeps
QUOTES = "\"'`\u201c\u201d\u2018\u2019\u00ab\u00bb*#"  # what models wrap a title in, or Markdown they dress it with
LABEL = re.compile(r"^(title|titre|titel|título)\s*:\s*", re.IGNORECASE)


def title_prompt(first_turn: list[dict[str, str]]) -> list[dict[str, str]]:
    """The instruction, then the first turn as one quoted text: given as chat messages, the model
    would answer the conversation instead of naming it."""
    lines = [f"{turn['role'].capitalize()}: {turn['content'][:TURN_SOURCE_CHARS]}" for turn in first_turn]
    return [{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": "\n\n".join(lines)}]


def clean_title(answer: str) -> str:
    """The title in the model's answer: its first non-empty line, without a "Title:" label, the
    quotes and Markdown around it or a final full stop, cut at a word to MAX_TITLE_CHARS. Empty
    when nothing is left."""
    line = next((line for line in answer.splitlines() if line.strip(QUOTES + " \t")), "")
    title = LABEL.sub("", line.strip(QUOTES + " \t"))
    title = " ".join(title.strip(QUOTES + " \t").split()).rstrip(".")
    if len(title) > MAX_TITLE_CHARS:
        cut = title[: MAX_TITLE_CHARS + 1]
        title = cut[: cut.rfind(" ")] if " " in cut else cut[:MAX_TITLE_CHARS]
    return title.strip(QUOTES + " ,;:-")


class ConversationTitles:
    """Runs on the reply engine's loop: `schedule` is called there by the pipeline."""

    def __init__(self, store: ReplyStore, model: ChatModel, *, title_model: str, max_tokens: int) -> None:
        self.store = store
        self.model = model
        self.title_model = title_model
        self.max_tokens = max_tokens
        self._tasks: set[asyncio.Task[bool]] = set()  # the loop keeps only weak references

    def schedule(self, conversation_id: str) -> None:
        """Title the conversation in a task of its own, if it is its turn; returns at once."""
        task = asyncio.get_running_loop().create_task(self.title(conversation_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def pending(self) -> int:
        return len(self._tasks)

    async def title(self, conversation_id: str) -> bool:
        """Whether a title was set. Every failure is logged and leaves the conversation untitled."""
        with structlog.contextvars.bound_contextvars(conversation_id=conversation_id):
            try:
                return await self._title(conversation_id)
            except ChatError as error:
                logger.warning("conversation left untitled", error_type=type(error).__name__)
            except Exception as error:  # a bug here must not reach the loop's exception handler
                logger.warning("conversation left untitled", error_type=type(error).__name__, exc_info=True)
            return False

    async def _title(self, conversation_id: str) -> bool:
        request = await self.store.claim_conversation_title(conversation_id)
        if request is None:
            return False  # titled already, by its owner or before; or no tokens left
        started = time.perf_counter()
        reply = await self.model.complete(title_prompt(request.messages), self.title_model, self.max_tokens)
        tokens = (reply.prompt_tokens or 0) + (reply.completion_tokens or 0)
        titled = await self.store.set_conversation_title(conversation_id, clean_title(reply.content), tokens)
        logger.info(
            "conversation titled" if titled else "conversation title not set",
            model=reply.model,
            tokens=tokens,
            model_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return titled
