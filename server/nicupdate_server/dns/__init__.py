"""The built-in DNS data plane: answering queries (:mod:`.answer`, :mod:`.wire`), rate
limiting (:mod:`.ratelimit`), the listeners (:mod:`.server`), and the process they run
in, apart from the update server (:mod:`.process`, :mod:`.supervise`)."""
