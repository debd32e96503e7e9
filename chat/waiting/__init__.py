"""The waiting flow: a direct caller's request that inserted a message and waits for its reply.

direct_chat.py waits for the whole reply (waiter.py: told at once when this process or a sibling
settles the message, polling the row otherwise); direct_stream.py follows a streamed reply
(chat/reply_feed.py in this process, the reply's Realtime channel across processes) for SSE."""
