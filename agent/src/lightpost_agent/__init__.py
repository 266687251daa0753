"""lightpost-agent: the on-device agent (the ``lightpost[agent]`` extra).

``command`` (pure: the command and result wire format, the ``[agent]`` policy, the decision
rules), ``agent`` (decisions and anti-rollback state), ``handlers`` (built-in handlers, updates),
``store`` (the agent's durable state), ``service`` (the node service that feeds it verified
commands and sends its signed results).
"""
