"""lightpost-operator: the operator-side tools, kept out of the device core.

The local devnet (anvil process, contract deployment, funded device identities), the
smart-city demo, and the lying JSON-RPC proxy used to attack lightpost. They add the
`lightpost devnet` and `lightpost demo` sub-commands through an entry point.
"""
