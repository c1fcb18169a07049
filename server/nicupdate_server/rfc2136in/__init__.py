"""DNS UPDATE messages (RFC 2136) sent to the built-in DNS port, signed with TSIG keys.

Routers (MikroTik's ``/tool dns-update``), ``nsupdate -k`` and ACME clients (certbot's
and lego's rfc2136 plugins) change the A, AAAA and ``_acme-challenge`` TXT records of
the hosts a key may update, in every configured zone whatever its backend. The DNS
process only carries the messages (:mod:`.handover`, over its control socket); the
server checks and applies them on the path every update takes
(:meth:`~..updates.UpdateService.change`), and answers once DNS has the change.

- :mod:`.keys`: the keys, made by the CLI and held by the server as a keyring.
- :mod:`.message`: an UPDATE message, parsed and checked into typed parts (pure).
- :mod:`.prereqs`: its prerequisites against what the server stores (pure).
- :mod:`.policy`: which changes a key may make, and what they do to a host's records.
- :mod:`.handler`: one message from its bytes to the reply's.
- :mod:`.handover`: the DNS process's side: hand the message over, bounded, and wait.
- :mod:`.admin` and :mod:`.cli`: ``nicupdate-server key add|list|remove``.

Nothing is imported here: the DNS process and the CLI read only the module they need.
"""
