"""lightpost-beacon: the sync-committee light client (``trust = "beacon"``), installed by the
``lightpost[beacon]`` extra.

Pure (sans-I/O): ``ssz`` (merkleization), ``containers`` (light-client containers and their
bounded beacon-API JSON form), ``lightclient`` (the sync protocol, one table). I/O: ``sources``
(beacon endpoints as untrusted data sources, persisted state), ``bls`` (FastAggregateVerify from
py-arkworks-bls12381).
"""
