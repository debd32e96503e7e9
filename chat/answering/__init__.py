"""The answering flow: a user message in, its reply (whole or streamed) and a settled row out.

The reply engine (engine.py) runs every reply as a task on one event loop per process; the
pipeline (pipeline.py) claims a message, builds its context (context.py) and asks the model;
claimed_reply.py makes every write of the claimed reply, fenced by its claim; streaming.py,
broadcasts.py and live_replies.py stream the reply, publish it over Realtime and keep its claim
alive; titles.py names a conversation after its first answer; redrive.py re-sends what nobody
answered."""
