"""lightpost-gateway: devices without an operating system (the ``lightpost[gateway]`` extra).

``record`` (pure): the device record format -- signed, domain-separated, hash-chained per
device -- its strict decoder and the receiver's rules (chain links, liveness). The board library
that produces records is ``lightpost.device`` (shipped as the ``lpdevice`` bundle).

Pure: ``batch`` (Merkle batches, one leaf per device), ``anchor`` (the anchoring contract's rules;
``anchor.easm`` / ``anchor.json``), ``admit`` (a gateway's admission rule), ``relay`` (a
receiver's checks of gateway-relayed and posted records, and ``complete`` per gateway).
Pure: ``feed`` (what gateways publish to receivers, backfill requests), ``merge`` (one device's
chain merged across gateways: judged, delivered once in order at a level).
I/O: ``service`` (the gateway: SQLite, MQTT, batching, receipts), ``publish`` (its feed and
backfill), ``receiver`` (proving an anchor transaction and a gateway's accumulator), ``follow``
(the merging receiver; ``receive_cmd``: ``lightpost receive`` on a ``[gateways]`` config),
``mqtt`` (the device's MQTT client, the same file, shipped here), ``artifact`` (the contract).
"""
