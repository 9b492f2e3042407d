"""bulk-attach: link classic-network ECS instances to VPCs in bulk, safely and fast.

The request signer is part of the public API: ``bulk_attach.api.signing``.
"""

__version__ = "0.1.0"
