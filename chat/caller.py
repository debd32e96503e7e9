"""Who is calling the REST door: a signed-in user whose access token the door has verified.
"Caller" means only this in the codebase; what runs as them is the CallerStore."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    user_id: str
    access_token: str  # passed on to Supabase so row-level security judges every request
