"""The delivery gateway (`declic gateway`): deliveries to the app over HTTP and SSE.

An aiohttp server that follows the `deliveries` and `impressions` topics, keeps each
user's recent deliveries in memory, offers those not yet shown (`/messages`), pushes new
ones to the user's connected streams (server-sent events), and publishes the app's
interactions to `interactions`. Every instance reads every partition: instances are
interchangeable behind a load balancer. See README, "Delivery gateway", and the API in
``schemas/gateway-api.openapi.yaml``.

Modules: ``rules`` (pure: what is offered, what a resumed stream replays), ``index``
(bounded per-user store), ``records`` (Kafka records to held deliveries), ``hub``
(ingestion and fan-out), ``kafka_io`` (the consumer and producer), ``tokens``, ``limits``,
``cors``, ``metrics``, ``static``, ``errors`` (JSON error answers), ``context`` (what the
handlers share), ``api`` (the /v1 routes), ``sse`` (the stream), ``demo``, ``app`` (the
aiohttp application) and ``server`` (the process: start, signals, stop).
"""
