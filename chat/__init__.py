"""The domain both doors share, in two flows: answering (chat/answering/: the reply engine, the
pipeline, streaming, titles, the sweep) and waiting (chat/waiting/: a direct caller waiting for
or following its reply). They meet in chat/service.py (the verbs the doors call) and the ports
(chat/ports.py) the adapters implement. Nothing here knows about Flask, supabase-py or aiohttp,
so all of it runs in a unit test on in-memory fakes."""
