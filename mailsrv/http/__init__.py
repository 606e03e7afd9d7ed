"""
The optional HTTP endpoint: MTA-STS policy, mail client autoconfiguration
(Thunderbird autoconfig, Microsoft Autodiscover) and Prometheus metrics.
"""
