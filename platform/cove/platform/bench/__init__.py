"""`cove bench`: measure what the gateway adds on the request path.

The pieces run as separate processes so that none of them measures itself: a fixed-latency
OpenAI-compatible upstream (`responder`), an open-loop load generator (`load`), and the
orchestration that starts Postgres, Redis, the gateway, LiteLLM and vLLM and prints the
results (`gateway`).
"""
