"""The acme-dns compatible API, under ``/acme-dns``: ACME DNS-01 for the hosts' names.

ACME clients that speak acme-dns (certbot's plugin, lego, acme.sh, Caddy, Traefik) set
the TXT records at ``_acme-challenge.<host>`` through it, with the answers acme-dns
gives (https://github.com/joohoi/acme-dns). Its accounts are made by the operator
(``nicupdate-server acme add FQDN``), never over HTTP; each may set the TXT records of
one host and nothing else. An update takes the same path as a dyndns2 update
(:meth:`~..updates.UpdateService.set_txt`) and is answered once DNS has it.

- :mod:`.protocol`: what clients send and what they are answered (pure).
- :mod:`.accounts`: the credentials, made and looked up.
- :mod:`.endpoint`: the routes (``/update``, ``/health``, ``/register``).
- :mod:`.admin` and :mod:`.cli`: ``nicupdate-server acme add|list|remove``.

Nothing is imported here: the CLI reads :mod:`.cli` without the HTTP side.
"""
