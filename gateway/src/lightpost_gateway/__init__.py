"""lightpost-gateway: devices without an operating system (the ``lightpost[gateway]`` extra).

``record`` (pure): the device record format -- signed, domain-separated, hash-chained per
device -- its strict decoder and the receiver's rules (chain links, liveness). The board library
that produces records is ``lightpost.device`` (shipped as the ``lpdevice`` bundle).
"""
