"""The domain both doors share: the reply pipeline and the reply engine it runs on, the sweep and
the waiter, direct chat, and the ports (chat/ports.py) the adapters implement. Nothing here knows
about Flask, supabase-py or aiohttp, so all of it runs in a unit test on in-memory fakes."""
