"""What the model is shown: the conversation's system prompt, then its newest messages that fit
the token budget, oldest first. The store already cut the history to the budget; this adds the
system prompt and keeps the SQL's token estimate in one Python twin for the budget arithmetic."""

from __future__ import annotations


def estimate_tokens(text: str) -> int:
    """Same estimate as fetch_message_context's SQL (chars / 4 + 4): cheap, and close enough for
    English prose to keep a prompt inside a budget with headroom."""
    return len(text) // 4 + 4


def history_budget(token_budget: int, system_prompt: str | None) -> int:
    """Tokens left for history once the system prompt is in (at least one message's worth)."""
    return max(token_budget - (estimate_tokens(system_prompt) if system_prompt else 0), 1)


def build_prompt(system_prompt: str | None, history: list[dict[str, str]]) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.extend({"role": item["role"], "content": item["content"]} for item in history)
    return messages
