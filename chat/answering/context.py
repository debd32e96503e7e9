"""What the model is shown: the conversation's system prompt, then the history the claim read
(the newest messages that fit the token budget, oldest first; cut to size in SQL, see
claim_message_for_reply)."""

from __future__ import annotations


def build_prompt(system_prompt: str | None, history: list[dict[str, str]]) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.extend({"role": item["role"], "content": item["content"]} for item in history)
    return messages
