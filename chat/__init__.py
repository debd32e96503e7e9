"""The domain both doors share: the reply pipeline, its workers, sweep and waiter, direct chat,
and the ports (chat/ports.py) the adapters implement. Nothing here knows about Flask, supabase-py
or openai, so all of it runs in a unit test on in-memory fakes."""
